"""X-WIN's context encoder f: a timm VisionTransformer without CLS token, with fixed 2D sin-cos
position embeddings (as in the I-JEPA / X-WIN releases), and the masked forward pass of I-JEPA.

The encoder is `timm.create_model(<size's name>, pretrained=False, class_token=False,
global_pool='', num_classes=0, img_size, patch_size, in_chans, depth, ...)`, so its state dict
loads into timm as-is (see `timm_export_spec`). The position table is computed here and copied
into `pos_embed`, which does not train. The input standardisation (x − input_mean) / input_std
(model config) is applied in `encode`, from `vit.input_norm`, so it is not part of the state dict:
an exported encoder carries it in its metadata.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from drrkit.train.config import VIT_SIZES, ModelConfig
from drrkit.train.masks import apply_masks


def sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_pos_embed(dim: int, grid: int) -> torch.Tensor:
    """(grid², dim) 2D sin-cos table: half the channels encode the row, half the column
    (I-JEPA's get_2d_sincos_pos_embed, row-major patch order)."""
    if dim % 4:
        raise ValueError(f"sin-cos position embeddings need a width divisible by 4, got {dim}")
    w, h = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64))
    emb = np.concatenate([sincos_1d(dim // 2, w), sincos_1d(dim // 2, h)], axis=1)
    return torch.from_numpy(emb).float()


def timm_spec(cfg: ModelConfig, global_pool: str = "") -> tuple[str, dict]:
    """(timm model name, create_model kwargs) of the encoder. For export, global_pool='avg' with
    fc_norm=False keeps the final `norm` so that the training state dict loads strictly."""
    kwargs = {"img_size": cfg.img_size, "patch_size": cfg.patch_size, "in_chans": cfg.in_chans,
              "embed_dim": cfg.embed_dim, "depth": cfg.encoder_depth, "num_heads": cfg.num_heads,
              "num_classes": 0, "class_token": False, "global_pool": global_pool}
    if global_pool:
        kwargs["fc_norm"] = False
    return VIT_SIZES[cfg.size][3], kwargs


def build_encoder(cfg: ModelConfig) -> nn.Module:
    import timm

    name, kwargs = timm_spec(cfg)
    vit = timm.create_model(name, pretrained=False, **kwargs)
    vit.pos_embed.requires_grad_(False)
    with torch.no_grad():
        vit.pos_embed.copy_(sincos_pos_embed(cfg.embed_dim, cfg.grid).unsqueeze(0))
    vit.input_norm = (float(cfg.input_mean), float(cfg.input_std))
    return vit


def encode(vit: nn.Module, images: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Patch tokens (B, T, D) after the final norm; with `keep` (B, K) patch indices only those
    tokens enter the transformer (I-JEPA context encoding) → (B, K, D). `images` are [0, 1]
    display images; they are standardised by `vit.input_norm` (set by build_encoder)."""
    mean, std = vit.input_norm
    if (mean, std) != (0.0, 1.0):
        images = (images - mean) / std
    x = vit.patch_embed(images)
    x = vit.pos_drop(x + vit.pos_embed)
    x = vit.norm_pre(vit.patch_drop(x))
    if keep is not None:
        x = apply_masks(x, [keep])
    return vit.norm(vit.blocks(x))
