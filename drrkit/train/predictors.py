"""X-WIN's two predictors over encoder tokens.

ViewPredictor g_v (the world model's transition): encoder tokens of the context view are
projected to a narrower width (768 → 384 in the release), one action token — the relative pose
through Linear(action_dim → width) — is prepended, `depth` (3) transformer blocks run, the action
token is dropped and the tokens are projected back: the predicted tokens of the target view.

MaskedPredictor g_m: the I-JEPA predictor. Context tokens (projected, plus fixed sin-cos
positions of where they came from) and one learned mask token per masked patch (plus its
position) go through a transformer; the outputs at the mask tokens are the predicted target
tokens of the masked patches.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block

from drrkit.train.masks import apply_masks
from drrkit.train.vit import sincos_pos_embed


def transformer_blocks(width: int, depth: int, num_heads: int) -> nn.ModuleList:
    return nn.ModuleList(Block(width, num_heads, mlp_ratio=4.0, qkv_bias=True,
                               norm_layer=partial(nn.LayerNorm, eps=1e-6)) for _ in range(depth))


def init_like_ijepa(module: nn.Module, blocks: nn.ModuleList, std: float = 0.02) -> None:
    """Truncated-normal Linear weights, zero biases, unit LayerNorms; residual projections of
    block i scaled by 1/sqrt(2i) (I-JEPA's fix_init_weight)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    with torch.no_grad():
        for i, blk in enumerate(blocks, start=1):
            blk.attn.proj.weight.div_(math.sqrt(2.0 * i))
            blk.mlp.fc2.weight.div_(math.sqrt(2.0 * i))


class ViewPredictor(nn.Module):
    """g_v: (context tokens (B, T, D), action (B, A)) → predicted target-view tokens (B, T, D)."""

    def __init__(self, embed_dim: int, width: int, depth: int, num_heads: int, action_dim: int):
        super().__init__()
        self.embed = nn.Linear(embed_dim, width)
        self.action_embed = nn.Linear(action_dim, width)
        self.blocks = transformer_blocks(width, depth, num_heads)
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.proj = nn.Linear(width, embed_dim)
        init_like_ijepa(self, self.blocks)

    def forward(self, tokens: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        action = self.action_embed(actions.to(x.dtype)).unsqueeze(1)
        x = torch.cat([action, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.proj(self.norm(x)[:, 1:])


class MaskedPredictor(nn.Module):
    """g_m: (context tokens (B, K_c, D), their indices (B, K_c), npred masks (npred, B, K_p))
    → predictions for the masked tokens (npred·B, K_p, D), mask-major as I-JEPA's apply_masks."""

    def __init__(self, embed_dim: int, width: int, depth: int, num_heads: int, grid: int):
        super().__init__()
        self.embed = nn.Linear(embed_dim, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(sincos_pos_embed(width, grid).unsqueeze(0), requires_grad=False)
        self.blocks = transformer_blocks(width, depth, num_heads)
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.proj = nn.Linear(width, embed_dim)
        init_like_ijepa(self, self.blocks)
        trunc_normal_(self.mask_token, std=0.02)

    def forward(self, tokens: torch.Tensor, masks_enc: torch.Tensor, masks_pred: torch.Tensor) -> torch.Tensor:
        batch = tokens.size(0)
        pos = self.pos_embed.expand(batch, -1, -1)
        x = self.embed(tokens) + apply_masks(pos, [masks_enc])
        n_ctx = x.size(1)
        pred_pos = apply_masks(pos, list(masks_pred))  # (npred·B, K_p, W)
        pred = self.mask_token.to(x.dtype).expand(pred_pos.size(0), pred_pos.size(1), -1) + pred_pos
        x = torch.cat([x.repeat(len(masks_pred), 1, 1), pred], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.proj(self.norm(x)[:, n_ctx:])
