"""A training run folder and what it records before the first step.

  RUN/config.yaml       resolved TrainConfig
  RUN/run.json          inputs (stores, real-radiograph folder), derived schedule, environment
  RUN/split.json        train / validation CTs (by store and CT id, seeded)
  RUN/metrics.jsonl     per-step metrics            RUN/loss_curve.png
  RUN/checkpoints/      last.pt, step-XXXXXXX.pt    RUN/train_summary.json at the end

A new run refuses a folder that already holds a checkpoint; `resume` continues one with the
config saved in its checkpoint (a config given again must match it outside its `run` section).
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import yaml

from drrkit.config import ConfigError
from drrkit.train.checkpoint import last_checkpoint, load_checkpoint
from drrkit.train.config import TrainConfig
from drrkit.train.data import CTViews, read_split, scan_store, split_cts, write_split


@dataclass(frozen=True)
class RunInputs:
    stores: tuple[str, ...]
    real_dir: str | None = None

    @classmethod
    def of(cls, stores, real_dir=None) -> "RunInputs":
        return cls(tuple(str(Path(s).resolve()) for s in stores), str(Path(real_dir).resolve()) if real_dir else None)


def _config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _config_diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} (run) vs {vb!r} (given)")
    return out


def prepare_run(out: Path, cfg: TrainConfig | None, stores, real_dir, resume: bool):
    """→ (config, inputs, checkpoint payload or None) after the new-run / resume checks."""
    out = Path(out)
    ckpt = last_checkpoint(out)
    if not resume:
        if cfg is None:
            raise ConfigError("a new run needs a training config")
        if ckpt.exists():
            raise ConfigError(f"{out}: already holds a run ({ckpt}); pass --resume to continue it or choose another --out")
        if not stores:
            raise ConfigError("a new run needs at least one --store")
        out.mkdir(parents=True, exist_ok=True)
        return cfg, RunInputs.of(stores, real_dir), None
    if not ckpt.exists():
        raise ConfigError(f"{out}: nothing to resume (no {ckpt})")
    payload = load_checkpoint(ckpt)
    saved = TrainConfig.from_dict(payload["config"], where=f"{ckpt} config")
    if cfg is not None:  # the `run` section (device, checkpoint and log cadence) may change
        diff = _config_diff(replace(saved, run=cfg.run).to_dict(), cfg.to_dict())
        if diff:
            raise ConfigError(f"{out}: the given config differs from the run's: " + "; ".join(diff))
        saved = replace(saved, run=cfg.run)
    inputs = RunInputs(tuple(payload["inputs"]["stores"]), payload["inputs"]["real_dir"])
    given = RunInputs.of(stores, real_dir)
    if (stores and given.stores != inputs.stores) or (real_dir and given.real_dir != inputs.real_dir):
        raise ConfigError(f"{out}: resume must use the run's inputs {asdict(inputs)} (or give none)")
    return saved, inputs, payload


def load_split(out: Path, cfg: TrainConfig, inputs: RunInputs, fresh: bool = False,
               write: bool = False) -> tuple[list[CTViews], list[CTViews]]:
    """Scan the stores and split by CT. A new run (`fresh`) draws the seeded split (every rank
    the same; `write` on rank 0 records it); otherwise the run's split.json is authoritative."""
    cts = [ct for store in inputs.stores for ct in scan_store(store, cfg.data, cfg.model.action_dim)]
    split_file = Path(out) / "split.json"
    if not fresh and split_file.exists():
        by_key = {(c.store, c.ct_id): c for c in cts}
        record = read_split(split_file)
        missing = [k for part in ("train", "val") for k in map(tuple, record[part]) if k not in by_key]
        if missing:
            raise ConfigError(f"{split_file}: CTs no longer in the stores (or not done): {missing[:5]}")
        return [by_key[tuple(k)] for k in record["train"]], [by_key[tuple(k)] for k in record["val"]]
    train, val = split_cts(cts, cfg.data.val_fraction, cfg.seed)
    if fresh and write:
        write_split(split_file, train, val, cfg.seed, cfg.data.val_fraction)
    return train, val


def write_run_files(out: Path, cfg: TrainConfig, inputs: RunInputs, schedule, world_size: int, device) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    info = {"inputs": asdict(inputs), "schedule": schedule.to_dict(), "world_size": world_size,
            "device": str(device), "torch": torch.__version__, "python": platform.python_version(),
            "host": platform.node()}
    (out / "run.json").write_text(json.dumps(info, indent=1))


def run_config(run: Path) -> tuple[TrainConfig, dict]:
    """(config, run.json) of a finished or running run folder."""
    run = Path(run)
    ckpt = last_checkpoint(run)
    if not ckpt.exists():
        raise ConfigError(f"{run}: not a training run (no {ckpt})")
    payload = load_checkpoint(ckpt)
    return TrainConfig.from_dict(payload["config"], where=f"{ckpt} config"), payload
