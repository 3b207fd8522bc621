"""Iterative reconstruction through the differentiable projector (`projector.JosephProjector`).

Two update rules, both over ordered subsets of views (interleaved, so each subset spans the orbit):

  "sart" (default)  OS-SART: x ← x + λ · Aₛᵀ((b - Aₛx) / Aₛ1) / Aₛᵀ1, then x ← max(x, 0), then, with
                    tv_weight > 0, `tv_steps` steps down the total-variation gradient of length
                    tv_weight · |Δx| (ASD-POCS style: the TV step follows the data step's size).
  "adam"            Adam on  |Aₛx - bₛ|² / |bₛ|² + tv_weight · mean TV(x), non-negativity by clamping
                    after each step or by x = softplus(z).

Aᵀ is autograd through the projector (matched to A). An iteration is one pass over all subsets.
With a truth volume, the PSNR after every iteration is recorded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from drrkit.reconstruct.geometry import ConeBeamGeometry
from drrkit.reconstruct.grid import OutputGrid
from drrkit.reconstruct.metrics import psnr
from drrkit.reconstruct.projector import INTERPOLATIONS, JosephProjector

METHODS = ("sart", "adam")
NONNEG = ("clamp", "softplus", "none")


@dataclass(frozen=True)
class IterativeConfig:
    method: str = "sart"
    iterations: int = 10  # passes over all views
    subsets: int = 10  # ordered subsets per pass
    relaxation: float = 0.8  # SART λ
    learning_rate: float = 0.005  # Adam, in density units per step
    tv_weight: float = 0.0
    tv_steps: int = 5  # SART: TV descent steps after each subset update
    nonneg: str = "clamp"  # clamp | softplus (Adam only) | none
    interpolation: str = "exact"  # projector model, see projector.py
    binning: int = 1  # average detector pixels bin×bin before fitting (speed; approximate model)
    chunk_elements: int | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"iterative method must be one of {METHODS}, got {self.method!r}")
        if self.nonneg not in NONNEG or (self.nonneg == "softplus" and self.method != "adam"):
            raise ValueError(f"nonneg must be one of {NONNEG} (softplus with adam only), got {self.nonneg!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if self.iterations < 0 or self.subsets < 1 or self.binning < 1 or self.tv_steps < 0:
            raise ValueError("iterations >= 0, subsets >= 1, binning >= 1 and tv_steps >= 0 are required")
        if self.tv_weight < 0 or self.relaxation <= 0 or self.learning_rate <= 0:
            raise ValueError("tv_weight >= 0, relaxation > 0 and learning_rate > 0 are required")


@dataclass(eq=False)
class IterativeResult:
    volume: np.ndarray
    history: list = field(default_factory=list)  # per iteration: iteration, seconds, data_rmse, psnr_db
    seconds: float = 0.0


def reconstruct_iterative(images, geometry: ConeBeamGeometry, grid: OutputGrid,
                          config: IterativeConfig = IterativeConfig(), device: str = "cpu",
                          initial: np.ndarray | None = None, truth: np.ndarray | None = None,
                          on_iteration=None) -> IterativeResult:
    """Fit a density on `grid` to `images` (N, H, W) taken with `geometry`."""
    import torch

    t0 = time.perf_counter()
    images = np.asarray(images, dtype=np.float32)
    if images.shape != (len(geometry), geometry.height, geometry.width):
        raise ValueError(f"images have shape {images.shape}, geometry needs "
                         f"({len(geometry)}, {geometry.height}, {geometry.width})")
    if not np.all(np.isfinite(images)):
        raise ValueError("images contain NaN/inf (views not rendered?)")
    if config.binning > 1:
        images, geometry = bin_images(images, config.binning), geometry.binned(config.binning)
    proj = JosephProjector(geometry, grid, config.interpolation, device, config.chunk_elements)
    data = torch.as_tensor(images, device=proj.device)
    x = torch.zeros(grid.shape, device=proj.device) if initial is None else \
        torch.as_tensor(np.asarray(initial, dtype=np.float32), device=proj.device).clamp_min(0).clone()
    n = len(geometry)
    subsets = [np.arange(s, n, config.subsets) for s in range(min(config.subsets, n))]
    updater = _SART(proj, data, x, subsets, config) if config.method == "sart" else _Adam(proj, data, x, config)
    result = IterativeResult(volume=np.empty(0))
    for it in range(1, config.iterations + 1):
        sq = sum(updater.step(views) for views in subsets)
        entry = {"iteration": it, "seconds": time.perf_counter() - t0,
                 "data_rmse": float(np.sqrt(sq / data.numel()))}
        if truth is not None:
            entry["psnr_db"] = psnr(updater.volume().cpu().numpy(), truth)
        result.history.append(entry)
        if on_iteration:
            on_iteration(entry)
    result.volume = updater.volume().cpu().numpy()
    result.seconds = time.perf_counter() - t0
    return result


def bin_images(images: np.ndarray, factor: int) -> np.ndarray:
    n, h, w = images.shape
    h2, w2 = h // factor, w // factor
    return images[:, :h2 * factor, :w2 * factor].reshape(n, h2, factor, w2, factor).mean(axis=(2, 4))


def _adjoint_residual(proj: JosephProjector, x, data, views, row_weight=None):
    """Aᵀ(w·(b - Ax)) over `views` by autograd, chunk by chunk, and Σ(b - Ax)²."""
    import torch

    leaf = x.detach().requires_grad_(True)
    sq = 0.0
    for chunk in proj.chunks(views):
        y = proj(leaf, chunk)
        resid = data[chunk] - y.detach()
        sq += float((resid ** 2).sum())
        y.backward(resid if row_weight is None else resid * row_weight[chunk])
    grad = leaf.grad if leaf.grad is not None else torch.zeros_like(x)
    return grad, sq


class _SART:
    def __init__(self, proj: JosephProjector, data, x0, subsets, config: IterativeConfig):
        import torch

        self.proj, self.data, self.config, self.x = proj, data, config, x0
        rows = proj.ray_lengths_in_grid()  # A·1, (N, H, W)
        self.row_weight = torch.where(rows > 1e-3 * rows.max(), 1.0 / rows.clamp_min(1e-12), torch.zeros_like(rows))
        self.col_inv = {}
        for views in subsets:
            cols = _column_sums(proj, views)  # Aₛᵀ1
            self.col_inv[int(views[0])] = torch.where(cols > 1e-6 * cols.max(), 1.0 / cols.clamp_min(1e-12),
                                                      torch.zeros_like(cols))

    def step(self, views) -> float:
        grad, sq = _adjoint_residual(self.proj, self.x, self.data, views, self.row_weight)
        new = self.x + self.config.relaxation * grad * self.col_inv[int(views[0])]
        if self.config.nonneg == "clamp":
            new = new.clamp_min(0)
        if self.config.tv_weight > 0:
            new = _tv_descent(new, self.config.tv_weight * float((new - self.x).norm()), self.config.tv_steps,
                              self.config.nonneg == "clamp")
        self.x = new.detach()
        return sq

    def volume(self):
        return self.x


def _column_sums(proj: JosephProjector, views):
    """Aᵀ1 over `views`: the summed ray length (mm) through each voxel."""
    import torch

    leaf = torch.zeros(proj.grid.shape, device=proj.device, requires_grad=True)
    for chunk in proj.chunks(views):
        proj(leaf, chunk).sum().backward()
    return leaf.grad.detach()


class _Adam:
    def __init__(self, proj: JosephProjector, data, x0, config: IterativeConfig):
        import torch

        self.proj, self.data, self.config = proj, data, config
        start = x0.clamp_min(1e-4) if config.nonneg == "softplus" else x0
        z = torch.log(torch.expm1(start)) if config.nonneg == "softplus" else start
        self.z = z.detach().clone().requires_grad_(True)
        self.opt = torch.optim.Adam([self.z], lr=config.learning_rate)
        self.norm = {}

    def _x(self):
        import torch.nn.functional as F

        return F.softplus(self.z) if self.config.nonneg == "softplus" else self.z

    def step(self, views) -> float:
        import torch

        key = int(views[0])
        if key not in self.norm:
            self.norm[key] = float((self.data[views] ** 2).sum()) or 1.0
        self.opt.zero_grad()
        xv = self._x()
        grad, sq = _adjoint_residual(self.proj, xv, self.data, views)
        loss_grad = -2.0 * grad / self.norm[key]  # d/dx |Ax - b|²/|b|²
        if self.config.tv_weight > 0:
            leaf = xv.detach().requires_grad_(True)
            (self.config.tv_weight * total_variation(leaf).mean()).backward()
            loss_grad = loss_grad + leaf.grad
        xv.backward(loss_grad)
        self.opt.step()
        if self.config.nonneg == "clamp":
            with torch.no_grad():
                self.z.clamp_(min=0)
        return sq

    def volume(self):
        return self._x().detach()


def total_variation(x, eps: float = 1e-4):
    """Isotropic TV density per voxel, √(Δi² + Δj² + Δk² + ε²) with forward differences."""
    import torch.nn.functional as F

    di = F.pad(x[1:] - x[:-1], (0, 0, 0, 0, 0, 1))
    dj = F.pad(x[:, 1:] - x[:, :-1], (0, 0, 0, 1))
    dk = F.pad(x[:, :, 1:] - x[:, :, :-1], (0, 1))
    return (di ** 2 + dj ** 2 + dk ** 2 + eps ** 2).sqrt()


def _tv_descent(x, step: float, n_steps: int, nonneg: bool):
    """`n_steps` steps of length `step` down the normalised TV gradient."""
    for _ in range(n_steps):
        leaf = x.detach().requires_grad_(True)
        total_variation(leaf).sum().backward()
        norm = leaf.grad.norm()
        if norm == 0:
            break
        x = x - step * leaf.grad / norm
        if nonneg:
            x = x.clamp_min(0)
    return x.detach()
