"""How good a reconstruction is: PSNR and SSIM against the density the images were rendered from.

The truth is DiffDRR's normalised density of the source CT (`diffdrr.data.transform_hu_to_density`
with the store's bone_attenuation_multiplier; min–max normalised over the whole CT), sampled on
the output grid. On the CT's own grid it is exact. On another grid it is the density averaged
over each output voxel (a Gaussian prefilter with the variance of the voxel-size ratio, then
trilinear sampling): an approximation of what a perfect reconstruction on that grid would hold.
Outside the CT the density is 0, as DiffDRR's renderer sees it.

For projections (model-predicted views against DRRs): `view_quality`, per-view PSNR and 2D SSIM
with a stated data range; `scale_fitted`, PSNR/SSIM of the volume's best scalar multiple (for
volumes in relative units).
"""

from __future__ import annotations

import numpy as np

from drrkit.ct.volume import CTVolume
from drrkit.reconstruct.grid import OutputGrid

SSIM_WINDOW = 7


def density_from_hu(hu: np.ndarray, bone_attenuation_multiplier: float = 1.0) -> np.ndarray:
    """DiffDRR's density (float32, in [0, 1]) of an HU volume, by DiffDRR's own function."""
    import torch
    from diffdrr.data import transform_hu_to_density

    with torch.no_grad():
        dens = transform_hu_to_density(torch.from_numpy(np.ascontiguousarray(hu, dtype=np.float32)),
                                       bone_attenuation_multiplier)
    return dens.numpy()


def truth_on_grid(ct: CTVolume, grid: OutputGrid, bone_attenuation_multiplier: float = 1.0) -> np.ndarray:
    """The density the renderer saw, on `grid` (float32, shape grid.shape)."""
    from scipy import ndimage

    density = density_from_hu(ct.hu, bone_attenuation_multiplier)
    if tuple(ct.shape) == tuple(grid.shape) and np.allclose(ct.affine, grid.affine, atol=1e-6):
        return density
    to_ct = np.linalg.inv(ct.affine) @ grid.affine  # output voxel index → CT voxel index
    ratio = np.abs(to_ct[:3, :3]).sum(axis=1)  # output voxel extent along each CT axis, CT voxels
    sigma = np.sqrt(np.maximum(ratio ** 2 - 1, 0) / 12)
    if np.any(sigma > 0.1):
        density = ndimage.gaussian_filter(density, sigma, mode="constant", cval=0.0)
    out = np.empty(grid.shape, dtype=np.float32)
    idx = np.stack(np.meshgrid(np.arange(grid.shape[1]), np.arange(grid.shape[2]), indexing="ij"), 0)
    for i in range(grid.shape[0]):  # slice by slice to bound memory
        pts = np.stack([np.full(idx.shape[1:], i), idx[0], idx[1]], 0).reshape(3, -1).astype(np.float64)
        coords = to_ct[:3, :3] @ pts + to_ct[:3, 3:4]
        out[i] = ndimage.map_coordinates(density, coords, order=1, mode="constant", cval=0.0).reshape(idx.shape[1:])
    return out


def psnr(recon: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """10·log10(range² / MSE) in dB, range = max - min of the whole truth; MSE over `mask`."""
    recon, truth = _check(recon, truth)
    data_range = float(truth.max() - truth.min())
    err = (recon - truth) if mask is None else (recon - truth)[mask]
    if err.size == 0:
        raise ValueError("PSNR mask selects no voxels")
    mse = float(np.mean(err.astype(np.float64) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(data_range ** 2 / mse))


def ssim(recon: np.ndarray, truth: np.ndarray, slab: int = 32) -> float:
    """Mean 3D SSIM (skimage, 7³ uniform window, data_range of the truth), computed in slabs along
    the first axis (with a halo, so the result equals skimage's on the whole volume)."""
    from skimage.metrics import structural_similarity

    recon, truth = _check(recon, truth)
    win = min(SSIM_WINDOW, *(s if s % 2 else s - 1 for s in truth.shape))
    if win < 3:
        raise ValueError(f"SSIM needs a volume of at least 3 voxels per axis, got {truth.shape}")
    data_range = float(truth.max() - truth.min())
    pad, n = (win - 1) // 2, truth.shape[0]
    total, count = 0.0, 0
    for a in range(pad, n - pad, slab):
        b = min(a + slab, n - pad)
        lo, hi = max(a - pad, 0), min(b + pad, n)
        _, smap = structural_similarity(truth[lo:hi], recon[lo:hi], data_range=data_range, win_size=win,
                                        full=True)
        core = smap[a - lo:b - lo, pad:truth.shape[1] - pad, pad:truth.shape[2] - pad]
        total += float(core.sum(dtype=np.float64))
        count += core.size
    return total / count


def ssim_2d(image: np.ndarray, truth: np.ndarray, data_range: float) -> float:
    """Mean SSIM of one image (skimage, 7×7 uniform window or the largest odd one that fits)."""
    from skimage.metrics import structural_similarity

    image, truth = _check(image, truth)
    win = min(SSIM_WINDOW, *(s if s % 2 else s - 1 for s in truth.shape))
    if win < 3:
        raise ValueError(f"SSIM needs an image of at least 3 pixels per axis, got {truth.shape}")
    return float(structural_similarity(truth, image, data_range=data_range, win_size=win))


def view_quality(images: np.ndarray, truth: np.ndarray, data_range: float) -> dict:
    """PSNR (`data_range`² / MSE) and 2D SSIM of each of K images (K, H, W) against the truth:
    means over the views and the per-view values."""
    images, truth = _check(images, truth)
    per_view = []
    for image, true in zip(images, truth):
        mse = float(np.mean((image.astype(np.float64) - true) ** 2))
        value = float("inf") if mse == 0 else float(10 * np.log10(data_range ** 2 / mse))
        per_view.append({"psnr_db": value, "ssim": ssim_2d(image, true, data_range)})
    return {"psnr_db": float(np.mean([v["psnr_db"] for v in per_view])),
            "ssim": float(np.mean([v["ssim"] for v in per_view])), "data_range": float(data_range),
            "per_view": per_view}


def scale_fitted(recon: np.ndarray, truth: np.ndarray) -> dict:
    """PSNR/SSIM after the least-squares scale a = <recon, truth> / <recon, recon>: how good the
    volume is up to its units (the only fair measure of a volume in relative units)."""
    recon, truth = _check(recon, truth)
    r = recon.astype(np.float64).ravel()
    denom = float(r @ r)
    a = float(r @ truth.astype(np.float64).ravel()) / denom if denom > 0 else 0.0
    fitted = (recon * a).astype(np.float32)
    return {"scale": a, "psnr_db": psnr(fitted, truth), "ssim": ssim(fitted, truth)}


def _check(recon: np.ndarray, truth: np.ndarray):
    recon, truth = np.asarray(recon, dtype=np.float32), np.asarray(truth, dtype=np.float32)
    if recon.shape != truth.shape:
        raise ValueError(f"reconstruction shape {recon.shape} differs from truth shape {truth.shape}")
    return recon, truth
