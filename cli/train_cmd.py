"""`drrkit train`: train (or resume) an X-WIN world model on corpus stores."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def train(
    out: Path = typer.Option(..., "--out", help="Run folder: config, split, metrics, loss curve, checkpoints."),
    config: Optional[str] = typer.Option(None, "--config", help="Training config: a YAML path or a name from "
                                         "recipes/ (train-xwin-tiny | train-xwin-small | train-xwin-base). "
                                         "Optional with --resume (must then match the run's)."),
    store: Optional[List[Path]] = typer.Option(None, "--store", help="Corpus store (repeatable)."),
    real_dir: Optional[Path] = typer.Option(None, "--real-dir", help="Folder of real radiographs (PNG, JPEG, "
                                            "DICOM; recursive) for the MIM and domain losses."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Total optimizer steps (overrides the config's epochs)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda[:N] (default: the config's)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly from its last checkpoint."),
    stop_at: Optional[int] = typer.Option(None, "--stop-at", help="Checkpoint and stop at this global step "
                                          "(the schedule still spans all steps; --resume continues)."),
) -> None:
    """Train X-WIN (context encoder, EMA target encoder, view and masked predictors, domain
    classifier, decoder). Multi-GPU: `torchrun --nproc_per_node=N -m drrkit train ...`."""
    from cli.app import fatal_error, usage_error
    from drrkit.config import ConfigError
    from drrkit.store import StoreError
    from drrkit.train.config import load_train_config
    from drrkit.train.real import RealImageError

    if steps is not None and steps < 1:
        usage_error("--steps must be >= 1")
    if config is None and not resume:
        usage_error("--config is required for a new run")
    if device is not None and not (device in ("auto", "cpu") or device.startswith("cuda")):
        usage_error(f"--device must be auto, cpu or cuda[:N], got {device}")
    if steps is not None and resume and config is None:
        usage_error("--steps would change the schedule of the run being resumed; leave it out")
    try:
        cfg = load_train_config(config).with_overrides(steps) if config else None
        summary = _train_with_progress(cfg, store or [], out, real_dir, resume, stop_at, device)
    except (ConfigError, StoreError, RealImageError, FileNotFoundError, ValueError) as exc:
        usage_error(str(exc))
    except RuntimeError as exc:
        fatal_error(str(exc))
    _print_summary(summary)


def _train_with_progress(cfg, stores, out, real_dir, resume, stop_at, device) -> dict:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from cli.app import console
    from drrkit.train.loop import train

    columns = (TextColumn("[bold]steps"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("train", total=None, info="")

        def on_step(r: dict) -> None:
            info = f"loss {r['total']:.4f}  lr {r['lr']:.2e}  {r['images_per_s']:.0f} img/s"
            progress.update(task, total=r["stop"], completed=r["step"], info=info)

        return train(cfg, stores, out, real_dir=real_dir, resume=resume, stop_at=stop_at, device=device,
                     on_step=on_step)


def _print_summary(summary: dict) -> None:
    from cli.app import console

    last = summary.get("last") or {}
    losses = ", ".join(f"{k} {v:.4f}" for k, v in last.items()
                       if k not in ("step", "lr", "wd", "momentum", "images_per_s"))
    state = "finished" if summary["finished"] else f"stopped at step {summary['end_step']} (--resume continues)"
    console.print(f"[bold green]{state}[/]: steps {summary['start_step']}→{summary['end_step']} of "
                  f"{summary['total_steps']} on {summary['device']} × {summary['world_size']}; {losses}")
    from drrkit.train.schedule import INIT_SHARE_NOTE

    share = summary.get("target_init_share")
    if share is not None and share >= INIT_SHARE_NOTE:
        console.print(f"[yellow]note[/]: the EMA target encoder f' still holds {share:.0%} of its initial (random) "
                      f"weights at step {summary['end_step']}; `drrkit evaluate` probes the context encoder f too")
    console.print(f"run folder: {summary['run']}")
