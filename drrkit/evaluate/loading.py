"""Trained X-WIN models back from run folders, and frozen features from their encoders."""

from __future__ import annotations

from pathlib import Path

import torch

from drrkit.train.checkpoint import last_checkpoint, load_checkpoint
from drrkit.train.config import TrainConfig
from drrkit.train.model import XWin, build_xwin
from drrkit.train.vit import encode

ENCODERS = ("target", "context")  # f' (EMA, I-JEPA's evaluation choice) | f


def load_run(run: str | Path, device: str | torch.device = "cpu") -> tuple[TrainConfig, XWin, dict]:
    """(config, model in eval mode, checkpoint payload) of a run's checkpoints/last.pt."""
    ckpt = last_checkpoint(Path(run))
    payload = load_checkpoint(ckpt)
    cfg = TrainConfig.from_dict(payload["config"], where=f"{ckpt} config")
    model = XWin(cfg.model)
    model.load_state_dict(payload["model"])
    return cfg, model.to(device).eval(), payload


def random_init(cfg: TrainConfig, device: str | torch.device = "cpu") -> XWin:
    """The untrained baseline: the same architecture as initialised by the run's seed."""
    return build_xwin(cfg.model, cfg.seed).to(device).eval()


def encoder_of(model: XWin, which: str) -> torch.nn.Module:
    if which not in ENCODERS:
        raise ValueError(f"encoder must be one of {ENCODERS}, got {which!r}")
    return model.target_encoder if which == "target" else model.encoder


@torch.no_grad()
def pooled_features(encoder: torch.nn.Module, images: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """Mean-pooled patch tokens (K, D) of images (K, C, H, W), float32 on the CPU."""
    device = next(encoder.parameters()).device
    chunks = [encode(encoder, images[i:i + batch].to(device)).mean(1).float().cpu()
              for i in range(0, len(images), batch)]
    return torch.cat(chunks)
