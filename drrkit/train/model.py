"""The X-WIN world model: its five parts in one module, and the EMA update of the target encoder.

  encoder            f    context encoder (timm ViT, see vit.py); sees the frontal view
  target_encoder     f'   EMA copy of f; encodes full target views; never gets gradients
  view_predictor     g_v  context tokens + action → target-view tokens
  masked_predictor   g_m  I-JEPA predictor for masked image modelling (simulated and real)
  domain_classifier  f_c  real vs simulated from pooled g_m predictions
  decoder                 target/predicted tokens → image (for looking at and reconstructing)
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from drrkit.train.config import ModelConfig
from drrkit.train.heads import DomainClassifier, LatentDecoder
from drrkit.train.predictors import MaskedPredictor, ViewPredictor
from drrkit.train.vit import build_encoder, encode


class XWin(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        dim, heads = cfg.embed_dim, cfg.num_heads
        width = cfg.predictor_width or dim // 2
        self.encoder = build_encoder(cfg)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.view_predictor = ViewPredictor(dim, width, cfg.view_predictor_depth, heads, cfg.action_dim)
        self.masked_predictor = MaskedPredictor(dim, width, cfg.masked_predictor_depth, heads, cfg.grid)
        self.domain_classifier = DomainClassifier(dim, cfg.classifier_hidden)
        self.decoder = LatentDecoder(dim, cfg.decoder_width or dim // 2, cfg.decoder_depth, heads,
                                     cfg.grid, cfg.patch_size, cfg.in_chans)

    @torch.no_grad()
    def update_target_encoder(self, momentum: float) -> None:
        """f' ← m·f' + (1 − m)·f  (I-JEPA's momentum update)."""
        for q, k in zip(self.encoder.parameters(), self.target_encoder.parameters()):
            k.mul_(momentum).add_(q.detach(), alpha=1.0 - momentum)

    def context_tokens(self, images: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        return encode(self.encoder, images, keep)

    @torch.no_grad()
    def target_tokens(self, images: torch.Tensor) -> torch.Tensor:
        return encode(self.target_encoder, images)

    def predict_views(self, context: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Predicted tokens (B·N, T, D) of N views per context (B, C, H, W), actions (B, N, A)."""
        n = actions.size(1)
        tokens = self.context_tokens(context).repeat_interleave(n, dim=0)
        return self.view_predictor(tokens, actions.flatten(0, 1))


def build_xwin(cfg: ModelConfig, seed: int) -> XWin:
    """A freshly initialised X-WIN; initialisation is seeded (and leaves the global RNG seeded)."""
    torch.manual_seed(seed)
    return XWin(cfg)
