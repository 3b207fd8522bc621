"""Projection images predicted by a trained X-WIN: frontal radiograph + yaw angles → K views.

    model = load_view_model("runs/tiny")                 # RUN folder or a checkpoint .pt file
    images = model.predict(context, actions)             # (1, 1, S, S), (K, A) → (K, 1, S, S)

The context encoder f encodes the frontal view once; the view predictor g_v turns its tokens and
each view's action (for `action_dim: 1` the yaw in radians relative to the frontal view, exactly
as in training) into predicted target-view tokens; the latent→image decoder renders them. The
images are in the model's normalised input space (the train config's `data.intensity`, e.g.
per-image min–max to [0, 1]); `view_units` maps them to line integrals.

Checkpoints load with `torch.load(weights_only=True)` (drrkit.train.checkpoint). Anything that
replaces `XWinViewModel` in `reconstruct_from_model` (a test's stand-in, another model) needs the
same four members: img_size, intensity, action_dim, predict(context, actions), describe().
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from drrkit.reconstruct.inputs import ReconstructError

PREDICT_BATCH = 32  # views decoded per forward pass


class XWinViewModel:
    """A trained X-WIN (eval mode) as a frontal-view → K-views predictor."""

    def __init__(self, model, cfg, checkpoint: Path, step: int, training_stores: tuple[str, ...] = ()):
        self.model, self.cfg, self.checkpoint, self.step = model, cfg, Path(checkpoint), int(step)
        self.training_stores = tuple(training_stores)  # the stores the run trained on (their recipe)
        self.img_size = cfg.model.img_size
        self.intensity = cfg.data.intensity
        self.action_dim = cfg.model.action_dim

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def predict(self, context: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Decoded predicted views (K, 1, S, S), float32 on the CPU, of one context (1, 1, S, S)
        for actions (K, action_dim)."""
        s = self.img_size
        if tuple(context.shape) != (1, 1, s, s):
            raise ValueError(f"context must have shape (1, 1, {s}, {s}), got {tuple(context.shape)}")
        if actions.ndim != 2 or actions.shape[1] != self.action_dim:
            raise ValueError(f"actions must have shape (K, {self.action_dim}), got {tuple(actions.shape)}")
        m, dev = self.model, self.device
        tokens = m.context_tokens(context.to(dev, torch.float32))
        out = []
        for start in range(0, len(actions), PREDICT_BATCH):
            a = actions[start:start + PREDICT_BATCH].to(dev, torch.float32)
            predicted = m.view_predictor(tokens.expand(len(a), -1, -1), a)
            out.append(m.decoder(predicted).float().cpu())
        return torch.cat(out)

    def describe(self) -> dict:
        c = self.cfg.model
        return {"checkpoint": str(self.checkpoint), "step": self.step, "config_name": self.cfg.name,
                "size": c.size, "img_size": c.img_size, "patch_size": c.patch_size, "action_dim": c.action_dim,
                "intensity": self.intensity, "decoder": "latent→image head on view-predictor tokens"}


def checkpoint_file(checkpoint: str | Path) -> Path:
    """RUN/checkpoints/last.pt of a run folder, or the given .pt file; errors say what is missing."""
    from drrkit.train.checkpoint import last_checkpoint

    path = Path(checkpoint)
    if path.is_file():
        return path
    if not path.exists():
        raise ReconstructError(f"{path}: no such run folder or checkpoint file "
                               f"(--checkpoint takes a folder written by `drrkit train` or a .pt file)")
    ckpt = last_checkpoint(path)
    if not ckpt.is_file():
        raise ReconstructError(f"{path}: no checkpoint {ckpt} (not a `drrkit train` run folder, "
                               f"or the run has not saved a checkpoint yet)")
    return ckpt


def load_view_model(checkpoint: str | Path, device: str = "cpu") -> XWinViewModel:
    """The X-WIN of a run folder's last checkpoint (or of a checkpoint file), in eval mode."""
    from drrkit.train.checkpoint import load_checkpoint
    from drrkit.train.config import TrainConfig
    from drrkit.train.model import XWin

    ckpt = checkpoint_file(checkpoint)
    try:
        payload = load_checkpoint(ckpt)
        cfg = TrainConfig.from_dict(payload["config"], where=f"{ckpt} config")
        model = XWin(cfg.model)
        model.load_state_dict(payload["model"])
    except (ValueError, KeyError, RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise ReconstructError(f"{ckpt}: cannot load the X-WIN checkpoint ({exc})") from exc
    if cfg.model.in_chans != 1:
        raise ReconstructError(f"{ckpt}: the model takes {cfg.model.in_chans} input channels; "
                               f"reconstruction feeds it one grey radiograph")
    stores = tuple(str(s) for s in (payload.get("inputs") or {}).get("stores", ()))
    return XWinViewModel(model.to(device).eval(), cfg, ckpt, int(payload.get("step", -1)), stores)
