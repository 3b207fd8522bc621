"""Checkpoints of an X-WIN run: everything needed to continue exactly, loadable with
torch.load(weights_only=True) — only tensors and plain containers of primitives inside.

  format       "drrkit-xwin-checkpoint/1"
  step         optimizer steps done (the next batch is that of this step; see StepBatchSampler)
  model        state dict of XWin (encoder, target_encoder, predictors, heads)
  optimizer    AdamW state dict
  rng          python / numpy / torch CPU / CUDA generator states (the data order and masks are
               functions of (seed, step) and need no state of their own)
  config       the resolved TrainConfig as a dict
  schedule     derived step counts and learning rates
  inputs       stores and real-radiograph folder the run trained on
Files: RUN/checkpoints/last.pt and step-XXXXXXX.pt (the newest `keep` of those kept).
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

FORMAT = "drrkit-xwin-checkpoint/1"


def rng_state() -> dict:
    py = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state = {"python": [py[0], list(py[1]), py[2]],
             "numpy": {"bit_generator": np_state["bit_generator"],
                       "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                       "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                       "gauss": float(np_state["gauss"])},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"], "has_gauss": n["has_gauss"], "gauss": n["gauss"],
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]}})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dir(run: Path) -> Path:
    return Path(run) / "checkpoints"


def last_checkpoint(run: Path) -> Path:
    return checkpoint_dir(run) / "last.pt"


def step_path(run: Path, step: int) -> Path:
    return checkpoint_dir(run) / f"step-{step:07d}.pt"


def step_of(path: Path) -> int:
    """The step of a step-XXXXXXX.pt file."""
    return int(Path(path).stem.removeprefix("step-"))


def step_checkpoints(run: Path) -> list[Path]:
    """The run's kept step-XXXXXXX.pt files, oldest first (`run.keep_checkpoints` of them)."""
    return sorted(checkpoint_dir(run).glob("step-*.pt"))


def step_checkpoint(run: Path, step: int) -> Path:
    """The kept checkpoint of one step; FileNotFoundError naming the steps kept where it is not."""
    path = step_path(run, step)
    if not path.is_file():
        kept = [step_of(p) for p in step_checkpoints(run)]
        raise FileNotFoundError(f"{path}: no checkpoint of step {step}; kept steps: {kept or 'none'} "
                                "(run.checkpoint_every and run.keep_checkpoints decide which)")
    return path


def save_checkpoint(run: Path, payload: dict, keep: int) -> Path:
    """Write step-XXXXXXX.pt and last.pt atomically (temp file + rename); prune old step files.
    The payload is serialised once: the step file is a hard link to the same bytes (a copy where
    the filesystem has no hard links), renamed into place like last.pt, so a crash never leaves a
    truncated checkpoint under either name."""
    folder = checkpoint_dir(run)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, **payload}
    tmp = folder / "last.pt.tmp"
    torch.save(payload, tmp)
    if keep > 0:
        step_file = step_path(run, payload["step"])
        step_tmp = step_file.with_name(step_file.name + ".tmp")
        step_tmp.unlink(missing_ok=True)
        try:
            os.link(tmp, step_tmp)
        except OSError:
            shutil.copyfile(tmp, step_tmp)
        os.replace(step_tmp, step_file)
    os.replace(tmp, folder / "last.pt")
    for old in step_checkpoints(run)[:-keep or None]:
        old.unlink()
    return folder / "last.pt"


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a drrkit X-WIN checkpoint (format {payload.get('format')!r})")
    return payload
