"""`drrkit evaluate`, `drrkit probe`, `drrkit export-encoder`: X-WIN runs after training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
    app.command("probe")(probe)
    app.command("export-encoder")(export_encoder)


def _errors():
    from drrkit.config import ConfigError
    from drrkit.store import StoreError
    from drrkit.train.real import RealImageError

    return ConfigError, StoreError, RealImageError, FileNotFoundError, ValueError


def evaluate(
    run: Path = typer.Argument(..., help="Run folder written by `drrkit train`."),
    store: Optional[List[Path]] = typer.Option(None, "--store", help="Evaluate on every done CT of these stores "
                                               "(default: the run's held-out CTs and its stores)."),
    compare: Optional[Path] = typer.Option(None, "--compare", help="Another run (e.g. MIM-only) whose encoders "
                                           "join the probes."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda[:N]"),
    step: Optional[int] = typer.Option(None, "--step", help="Evaluate the kept checkpoint of this step "
                                       "(RUN/checkpoints/step-*.pt) instead of the last; the report is "
                                       "RUN/evaluation-step-XXXXXXX.json."),
) -> None:
    """View retrieval on held-out CTs and phantom probes vs a random-init encoder → RUN/evaluation.json."""
    from cli.app import console, usage_error
    from drrkit.evaluate import evaluate_run

    try:
        report = evaluate_run(run, stores=store or None, compare=compare, device=device, step=step)
    except _errors() as exc:
        usage_error(str(exc))
    for name, r in report["retrieval"].items():
        if isinstance(r, dict):
            console.print(f"retrieval {name}: top1 {r['top1']:.3f} top5 {r['top5']:.3f} "
                          f"(chance {r['chance_top1']:.3f}/{r['chance_top5']:.3f}) on {r['n_cts']} CTs")
            ident = r.get("identification", {})
            if "top1" in ident:
                console.print(f"  which CT, among them, under the same action: top1 {ident['top1']:.3f} top5 "
                              f"{ident['top5']:.3f} (chance {ident['chance_top1']:.3f}/{ident['chance_top5']:.3f}), "
                              f"mean normalised rank {ident['mean_normalised_rank']:.3f} (chance 0.5)")
                cos = ident["target_cosine"]
                if cos["same_ct"] is not None:
                    console.print(f"  target embeddings, mean cosine: one CT's views {cos['same_ct']:.3f}, "
                                  f"one action's CTs {cos['same_action']:.3f}")
    for key in ("probes", "probes_grid"):
        _print_probes(console, report[key])
    from drrkit.train.schedule import INIT_SHARE_NOTE

    share = report.get("target_init_share")
    if share is not None and share >= INIT_SHARE_NOTE:
        console.print(f"note: the EMA target encoder f' (trained_target) is still {share:.0%} its initial weights")
    from drrkit.evaluate.report import report_path

    console.print(f"report: {report_path(run, step)} (step {report['step']})")


def _print_probes(console, probes: dict) -> None:
    from drrkit.evaluate.phantom_probe import above_random_init

    console.print(f"probes on the {probes['pooling']}:")
    spread = probes.get("feature_spread", {})
    for name, results in probes["encoders"].items():
        rank = f" (effective rank {spread[name]['effective_rank']:.1f})" if name in spread else ""
        console.print(f"  {name}{rank}: " + ", ".join(f"{k} {_score(v)}" for k, v in results.items()))
    for name, above in above_random_init(probes).items():
        console.print(f"  {name} above random init (95 % intervals: of the difference > 0, of its own score "
                      f"above chance): {', '.join(above) or 'none'}")
    if "reason" in probes:
        console.print(f"  not run: {probes['reason']}")


def _score(result: dict) -> str:
    value = result.get("auroc", result.get("r2"))
    if value is None:
        return "n/a"
    ci = result.get("ci95")
    return f"{value:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def probe(
    run: Path = typer.Argument(..., help="Run folder written by `drrkit train`."),
    data: Path = typer.Option(..., "--data", help="Labelled radiographs: one subfolder per class."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda[:N]"),
) -> None:
    """Linear probing (CV AUROC) of frozen encoder features on labelled radiograph folders."""
    from cli.app import console, usage_error
    from drrkit.evaluate import probe_folder

    try:
        report = probe_folder(run, data, device=device)
    except _errors() as exc:
        usage_error(str(exc))
    console.print(json.dumps(report["auroc"], indent=1))


def export_encoder(
    run: Path = typer.Argument(..., help="Run folder written by `drrkit train`."),
    out: Path = typer.Option(..., "--out", help="safetensors file to write."),
    which: str = typer.Option("target", "--encoder", help="target (EMA f') | context (f)"),
) -> None:
    """Write the encoder as a timm-compatible safetensors state dict (metadata says how to load it)."""
    from cli.app import console, usage_error
    from drrkit.evaluate import export_encoder as export

    if which not in ("target", "context"):
        usage_error(f"--encoder must be target or context, got {which}")
    try:
        meta = export(run, out, which)
    except _errors() as exc:
        usage_error(str(exc))
    console.print(f"{out}: timm {meta['timm_model']} {meta['timm_kwargs']}")
