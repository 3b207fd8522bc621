"""`drrkit evaluate RUN`: view retrieval on held-out CTs and phantom probes, with baselines.

Writes RUN/evaluation.json:
  retrieval   trained model and random-init model (same config and seed) on the held-out CTs of
              the run's split (or on every done CT of --store stores); each with `identification`,
              which of those CTs a prediction belongs to (retrieval.identification)
  target_init_share  how much of the EMA target encoder f' is still its initialisation at the
              checkpoint's step (schedule.Schedule.init_share): large after short runs
  probes      frozen frontal-view features of the trained encoders (EMA target f' and context f),
              the random-init encoder and, with --compare RUN2 (e.g. a MIM-only run), RUN2's
              encoders, against phantoms.csv ground truth (phantom_probe.py), on the mean of
              each encoder's patch tokens
  probes_grid the same, on the patch tokens average-pooled to a 4x4 grid of cells, with the pixels
              pooled to the same 4x4 cells as a second pixel baseline
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import torch

from drrkit.evaluate.loading import ENCODERS, encoder_of, load_run, pooled_features, random_init
from drrkit.evaluate.phantom_probe import phantom_probes
from drrkit.evaluate.retrieval import view_retrieval
from drrkit.train.checkpoint import step_checkpoint
from drrkit.train.data import ProjectionViews, scan_store
from drrkit.train.distributed import resolve_device
from drrkit.train.run import RunInputs, load_split
from drrkit.train.schedule import Schedule

REPORT_NAME = "evaluation.json"


def evaluation_data(run: Path, cfg, payload: dict, stores=None) -> tuple[ProjectionViews, ProjectionViews, str]:
    """(held-out CTs, all CTs for probing, description): the run's split, or all of --store."""
    if stores:
        cts = [ct for s in stores for ct in scan_store(s, cfg.data, cfg.model.action_dim)]
        held, where = cts, "all done CTs of " + ", ".join(str(s) for s in stores)
    else:
        inputs = RunInputs(tuple(payload["inputs"]["stores"]), payload["inputs"]["real_dir"])
        train, val = load_split(run, cfg, inputs)
        cts, held, where = train + val, val, f"validation CTs of {run / 'split.json'}"
    make = lambda c: ProjectionViews(c, cfg.data, cfg.model.img_size, cfg.seed) if c else None  # noqa: E731
    return make(held), make(cts), where


def report_path(run: Path, step: int | None = None) -> Path:
    """RUN/evaluation.json, or RUN/evaluation-step-XXXXXXX.json for an earlier kept checkpoint."""
    return run / (REPORT_NAME if step is None else f"evaluation-step-{step:07d}.json")


def evaluate_run(run: str | Path, stores=None, compare: str | Path | None = None, device: str = "auto",
                 step: int | None = None) -> dict:
    """Evaluate a run's last checkpoint (or the kept one of `step`); writes and returns report_path()."""
    run = Path(run)
    dev = resolve_device(device)
    cfg, model, payload = load_run(run, dev, None if step is None else step_checkpoint(run, step))
    baseline = random_init(cfg, dev)
    held, probe_data, where = evaluation_data(run, cfg, payload, stores)
    report = {"run": str(run.resolve()), "step": payload["step"], "config": cfg.name, "held_out": where,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "target_init_share": Schedule.from_dict(payload["schedule"]).init_share(payload["step"])}
    if held is None:
        report["retrieval"] = {"reason": "no held-out CTs (data.val_fraction is 0); pass --store"}
    else:
        report["retrieval"] = {"trained": view_retrieval(model, held), "random_init": view_retrieval(baseline, held)}
    encoders = {f"trained_{w}": encoder_of(model, w) for w in ENCODERS}
    encoders["random_init"] = encoder_of(baseline, "target")
    if compare is not None:
        _, other, other_payload = load_run(compare, dev)
        for w in ENCODERS:
            encoders[f"compare_{w}"] = encoder_of(other, w)
        report["compare"] = {"run": str(Path(compare).resolve()), "step": other_payload["step"]}
    report.update(phantom_probes(probe_data, encoders, seed=cfg.seed))
    report_path(run, step).write_text(json.dumps(report, indent=1))
    return report


@torch.no_grad()
def probe_folder(run: str | Path, data_dir: str | Path, device: str = "auto") -> dict:
    """Linear probing of labelled radiographs (one subfolder per class): CV AUROC for the trained
    encoders and the random-init one; written to RUN/probe-<folder name>.json."""
    from drrkit.evaluate.probes import cv_auroc
    from drrkit.train.real import RealRadiographs, labelled_folder, stack_images

    run, dev = Path(run), resolve_device(device)
    cfg, model, payload = load_run(run, dev)
    paths, labels, classes = labelled_folder(data_dir)
    images = stack_images(RealRadiographs(paths, cfg.model.img_size, cfg.data.intensity))
    encoders = {f"trained_{w}": encoder_of(model, w) for w in ENCODERS}
    encoders["random_init"] = encoder_of(random_init(cfg, dev), "target")
    results = {name: cv_auroc(pooled_features(enc, images).numpy(), labels, cfg.seed) for name, enc in encoders.items()}
    report = {"run": str(run.resolve()), "step": payload["step"], "data": str(Path(data_dir).resolve()),
              "classes": classes, "n_images": len(paths), "auroc": results}
    (run / f"probe-{Path(data_dir).name}.json").write_text(json.dumps(report, indent=1))
    return report
