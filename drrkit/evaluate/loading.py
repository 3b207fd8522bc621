"""Trained X-WIN models back from run folders, and frozen features from their encoders."""

from __future__ import annotations

from pathlib import Path

import torch

from drrkit.train.checkpoint import last_checkpoint, load_checkpoint
from drrkit.train.config import TrainConfig
from drrkit.train.model import XWin, build_xwin
from drrkit.train.vit import encode

ENCODERS = ("target", "context")  # f' (EMA, I-JEPA's evaluation choice) | f


def load_run(run: str | Path, device: str | torch.device = "cpu",
             checkpoint: str | Path | None = None) -> tuple[TrainConfig, XWin, dict]:
    """(config, model in eval mode, checkpoint payload) of a run's checkpoints/last.pt, or of the
    checkpoint file given (e.g. one of its step-XXXXXXX.pt)."""
    ckpt = Path(checkpoint) if checkpoint is not None else last_checkpoint(Path(run))
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


PROBE_GRID = 4  # grid-pooled probe features: the patch-token grid average-pooled to 4x4 cells


def pool_tokens(tokens: torch.Tensor, grid: int = 0) -> torch.Tensor:
    """Probe features of patch tokens (B, T, D) on a square grid (no CLS token): their mean (B, D)
    with grid=0, else the token grid average-pooled to grid x grid cells and flattened cell-major
    (B, grid² * D). Mean pooling, I-JEPA's linear-probe input, discards where in the image a
    feature is; sizes of organs live there."""
    if grid == 0:
        return tokens.mean(1)
    b, t, d = tokens.shape
    side = round(t ** 0.5)
    if side * side != t:
        raise ValueError(f"grid pooling needs a square token grid, got {t} tokens")
    cells = torch.nn.functional.adaptive_avg_pool2d(tokens.transpose(1, 2).reshape(b, d, side, side), grid)
    return cells.flatten(2).transpose(1, 2).flatten(1)


@torch.no_grad()
def pooled_feature_sets(encoder: torch.nn.Module, images: torch.Tensor, grids: tuple[int, ...] = (0,),
                        batch: int = 32) -> dict[int, torch.Tensor]:
    """{grid: features} of images (K, C, H, W), each encoded once (pool_tokens per grid), float32
    on the CPU."""
    device = next(encoder.parameters()).device
    chunks: dict[int, list[torch.Tensor]] = {g: [] for g in grids}
    for i in range(0, len(images), batch):
        tokens = encode(encoder, images[i:i + batch].to(device)).float()
        for g in grids:
            chunks[g].append(pool_tokens(tokens, g).cpu())
    return {g: torch.cat(c) for g, c in chunks.items()}


def pooled_features(encoder: torch.nn.Module, images: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """Mean-pooled patch tokens (K, D) of images (K, C, H, W), float32 on the CPU."""
    return pooled_feature_sets(encoder, images, (0,), batch)[0]
