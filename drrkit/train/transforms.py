"""Display transform and resize shared by simulated projections and real radiographs.

Stored DRRs are raw line integrals (mm of normalised density), real radiographs are detector
values after VOI; neither is in a common display range. X-WIN min–max scales every image to [0, 1]
(then to uint8 JPEG) before resizing to the model input, and that is the default here:

  minmax  x ← (x − min x) / (max x − min x)                       (X-WIN, per image)
  robust  x ← clip((x − p0.5) / (p99.5 − p0.5), 0, 1)            (per-image percentiles; resists
                                                                  a few hot or dead pixels)
A constant image maps to all zeros. Bright = dense in both (bone white), as on a radiograph.
Then a bilinear resize (torch, antialiased when shrinking) to (img_size, img_size); the result is
a float32 tensor (1, img_size, img_size) in [0, 1]. Deterministic: no randomness anywhere.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

ROBUST_PERCENTILES = (0.5, 99.5)


def _as_tensor(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(image, dtype=np.float32) if isinstance(image, np.ndarray) else image,
                           dtype=torch.float32)


def display_range(image: np.ndarray | torch.Tensor, kind: str = "minmax") -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) per image of (H, W) or (..., H, W): what `normalise` maps to 0 and 1."""
    flat = _as_tensor(image)
    flat = flat.reshape(*flat.shape[:-2], -1)
    if kind == "minmax":
        return flat.amin(-1), flat.amax(-1)
    if kind == "robust":
        q = torch.tensor([p / 100.0 for p in ROBUST_PERCENTILES])
        low, high = torch.quantile(flat, q, dim=-1)
        return low, high
    raise ValueError(f"unknown intensity transform {kind!r}")


def normalise(image: np.ndarray | torch.Tensor, kind: str = "minmax") -> torch.Tensor:
    """Per-image display transform to [0, 1] (see module docstring). Input (H, W) or (..., H, W)."""
    x = _as_tensor(image)
    low, high = display_range(x, kind)
    low, high = low[..., None, None], high[..., None, None]
    scale = torch.where(high > low, high - low, torch.ones_like(high))
    return ((x - low) / scale).clamp_(0.0, 1.0) * (high > low)


def resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """(..., H, W) → (..., size, size), bilinear; antialiased when shrinking so that a 512-pixel
    projection is not aliased on its way to 224."""
    if image.shape[-2:] == (size, size):
        return image
    lead = image.shape[:-2]
    x = image.reshape(-1, 1, *image.shape[-2:])
    shrink = image.shape[-2] > size or image.shape[-1] > size
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
    return x.reshape(*lead, size, size)


def to_model_input(image, size: int, kind: str = "minmax") -> torch.Tensor:
    """Raw (H, W) image (or a (V, H, W) stack) → float32 model input (1, size, size) per image."""
    x = resize(normalise(image, kind), size)
    return x.unsqueeze(-3)
