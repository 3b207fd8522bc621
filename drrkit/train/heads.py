"""X-WIN's small heads: the domain classifier f_c and the latent→image decoder.

DomainClassifier f_c: an MLP on mean-pooled tokens → one logit, "real" (1) vs "simulated" (0).
It is trained (L_cls) on detached features; the domain loss uses it with frozen weights so that
only the predictor/encoder move toward the real domain.

LatentDecoder: renders tokens back to pixels so that predicted view latents can be looked at and
used for reconstruction (the paper uses a VQ-GAN decoder; this is a light MAE-style transformer
decoder). Tokens (B, T, D) → Linear → + fixed sin-cos positions → blocks → per-patch pixels →
image (B, C, H, W). Trained with MSE on target views from target-encoder tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from drrkit.train.predictors import init_like_ijepa, transformer_blocks
from drrkit.train.vit import sincos_pos_embed


class DomainClassifier(nn.Module):
    def __init__(self, embed_dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, hidden)
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, pooled: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """Logits (N,) of "real" for pooled features (N, D). With `frozen`, gradients reach the
        features but not the classifier's own weights."""
        params = [p.detach() if frozen else p for p in (self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias)]
        h = F.gelu(F.linear(pooled, params[0], params[1]))
        return F.linear(h, params[2], params[3]).squeeze(-1)


class LatentDecoder(nn.Module):
    def __init__(self, embed_dim: int, width: int, depth: int, num_heads: int, grid: int, patch: int, chans: int):
        super().__init__()
        self.grid, self.patch, self.chans = grid, patch, chans
        self.embed = nn.Linear(embed_dim, width)
        self.pos_embed = nn.Parameter(sincos_pos_embed(width, grid).unsqueeze(0), requires_grad=False)
        self.blocks = transformer_blocks(width, depth, num_heads)
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.to_pixels = nn.Linear(width, patch * patch * chans)
        init_like_ijepa(self, self.blocks)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos_embed.to(tokens.dtype)
        for blk in self.blocks:
            x = blk(x)
        x = self.to_pixels(self.norm(x))  # (B, T, p·p·C)
        b, g, p, c = x.size(0), self.grid, self.patch, self.chans
        x = x.reshape(b, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, c, g * p, g * p)
