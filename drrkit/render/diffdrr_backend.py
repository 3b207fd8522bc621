"""Reference backend: plain DiffDRR (Siddon ray tracing), exactly as a user would call it.

The CT goes through `diffdrr.data.read` (HU → DiffDRR density, frame-of-reference change,
isocentre at the origin) and `diffdrr.drr.DRR` with the recipe's detector, so any stored image
is reproduced by plain DiffDRR from the store's metadata.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from drrkit.ct.volume import CTVolume
from drrkit.geometry.detector import Detector
from drrkit.geometry.poses import CONVENTION, PARAMETERIZATION, PoseSet
from drrkit.geometry.recipe import VolumeSpec
from drrkit.render.base import DensityUndefined
from drrkit.render.memory import MEMORY_FRACTION, batch_size_for, free_bytes
from drrkit.render.timing import phase

# Siddon keeps ~(I+J+K+3) intersections per ray through several float tensors (alphas, their
# sort, midpoints, xyz, gathered voxels, lengths). ~48 bytes per intersection per ray matches the
# 3.4 GB peak DiffDRR 0.6.1 shows for one 256² view of a 512×512×133 CT.
SIDDON_BYTES_PER_INTERSECTION = 48


def diffdrr_subject(ct: CTVolume, volume: VolumeSpec, field: np.ndarray | None = None):
    """The torchio Subject DiffDRR renders, built from an in-memory CTVolume. With `field` (same
    grid as the CT) that volume is integrated instead of DiffDRR's density: same frame, same rays."""
    import torch
    from diffdrr.data import read
    from torchio import ScalarImage

    if field is None:  # masked reductions: no copy of the voxels above -800 HU
        above = ct.hu > -800
        lo = np.min(ct.hu, where=above, initial=np.inf)
        if not (lo <= 350 and np.max(ct.hu, where=above, initial=-np.inf) > lo):
            raise DensityUndefined("CT has no voxel in (-800, 350] HU, or all its voxels above -800 HU hold one "
                                   "value: DiffDRR's density is undefined or constant (0/0)")
    image = ScalarImage(tensor=torch.from_numpy(np.ascontiguousarray(ct.hu))[None],
                        affine=np.asarray(ct.affine, dtype=np.float64))
    subject = read(image, orientation=volume.orientation,
                   bone_attenuation_multiplier=volume.bone_attenuation_multiplier, center_volume=True)
    if field is not None:
        subject.density.set_data(torch.from_numpy(np.ascontiguousarray(field, dtype=np.float32))[None])
    return subject


class DiffDRRBackend:
    name = "diffdrr"

    def __init__(self, detector: Detector, volume: VolumeSpec, device: str = "cpu",
                 batch_size: int | None = None, renderer: str = "siddon"):
        self.detector = detector
        self.volume = volume
        self.device = device
        self.batch_size = batch_size
        self.renderer = renderer

    def describe(self) -> dict:
        return {"backend": self.name, "device": self.device, "diffdrr_renderer": self.renderer,
                "batch_size": self.batch_size or "auto"}

    def bytes_per_view(self, ct: CTVolume) -> int:
        rays = self.detector.height * self.detector.width
        return rays * (sum(ct.shape) + 3) * SIDDON_BYTES_PER_INTERSECTION

    def plan_batches(self, ct: CTVolume) -> tuple[int, int | None]:
        """(views per call, DiffDRR patch_size). When even one view exceeds the memory budget the
        view is rendered in square patches of rays (DiffDRR's patch_size), one view at a time."""
        if self.batch_size:
            return self.batch_size, None
        per_view = self.bytes_per_view(ct)
        budget = free_bytes(self.device) * MEMORY_FRACTION
        if per_view <= budget:
            return batch_size_for(per_view, self.device, cap=64), None
        rays = self.detector.height * self.detector.width
        rays_that_fit = max(1, int(budget // (per_view / rays)))
        return 1, max(1, int(math.isqrt(rays_that_fit)))

    def render(self, ct: CTVolume, poses: PoseSet, field: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
        import torch
        from diffdrr.drr import DRR

        batch, patch = self.plan_batches(ct)
        # DiffDRR builds its density on the host and moves the module, volume included, to the
        # device: one "prepare" phase with the upload inside (drrkit/render/timing.py)
        with phase("prepare", self.device):
            drr = DRR(diffdrr_subject(ct, self.volume, field), renderer=self.renderer, patch_size=patch,
                      **self.detector.drr_kwargs()).to(self.device)
        for start in range(0, len(poses), batch):
            part = poses[start:start + batch]
            with phase("march", self.device):
                rot = torch.as_tensor(part.rotations, dtype=torch.float32, device=self.device)
                xyz = torch.as_tensor(part.translations, dtype=torch.float32, device=self.device)
                with torch.no_grad():
                    img = drr(rot, xyz, parameterization=PARAMETERIZATION, convention=CONVENTION)
                images = img[:, 0].float().cpu().numpy()
            yield start, images
        del drr
