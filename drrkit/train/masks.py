"""I-JEPA multiblock masks for X-WIN's masked predictor g_m, built in the collate function.

As facebookresearch/ijepa `src/masks/multiblock.py`: per batch one target-block size (scale
`pred_scale`, aspect `pred_aspect`) and one context-block size (scale `enc_scale`, aspect 1) are
drawn; per image `npred` target blocks and one context block placed at random, the context block
restricted to the complement of the target blocks (unless `allow_overlap`); every mask is cut to
the shortest in the batch so masks stack. Masks are patch indices into the (grid × grid) tokens.

One difference from the release: every draw, block positions included, comes from a generator
seeded by (seed, stream, step), so masks do not depend on worker count or process and a resumed
run sees exactly the masks it would have seen; and a block may touch the last row/column (the
release draws the corner with an exclusive bound one short).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import default_collate

from drrkit.train.config import MaskConfig


def mixed_seed(*parts: int) -> int:
    """One 63-bit seed from several integers (seed, stream, epoch, index, ...)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32).view(np.uint64)[0]
               >> np.uint64(1))


def apply_masks(x: torch.Tensor, masks: list[torch.Tensor]) -> torch.Tensor:
    """Keep the tokens of `x` (B, N, D) named by each mask (B, K); masks stacked along batch."""
    return torch.cat([torch.gather(x, 1, m.unsqueeze(-1).expand(-1, -1, x.size(-1))) for m in masks], dim=0)


class MaskCollator:
    """collate_fn: stack samples (dicts of tensors) and add `masks_enc` (B, K_enc) — the context
    tokens the encoder sees — and `masks_pred` (npred, B, K_pred) — the tokens g_m must predict.
    Every sample carries the integer `step` it belongs to (set by `StepBatchSampler`)."""

    def __init__(self, cfg: MaskConfig, grid: int, seed: int, stream: int = 0):
        self.cfg, self.height, self.width = cfg, grid, grid
        self.seed, self.stream = int(seed), int(stream)
        smallest = min(h * w for h, w in (self._size_at(r, cfg.pred_scale, cfg.pred_aspect) for r in np.linspace(0, 1, 201)))
        if smallest <= cfg.min_keep:  # the release would loop forever on such a draw
            raise ValueError(f"masks: target blocks of {smallest} patches on a {grid}x{grid} grid cannot keep more "
                             f"than min_keep={cfg.min_keep}; lower masks.min_keep or use a finer patch grid")

    def __call__(self, samples: list[dict]) -> dict:
        batch = default_collate(samples)
        g = torch.Generator().manual_seed(mixed_seed(self.seed, self.stream, int(samples[0]["step"])))
        enc, pred = self.sample_masks(len(samples), g)
        batch["masks_enc"], batch["masks_pred"] = enc, pred
        return batch

    def sample_masks(self, batch_size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        p_size = self._block_size(g, cfg.pred_scale, cfg.pred_aspect)
        e_size = self._block_size(g, cfg.enc_scale, (1.0, 1.0))
        all_pred, all_enc = [], []
        for _ in range(batch_size):
            preds, complements = zip(*[self._block_mask(g, p_size) for _ in range(cfg.npred)])
            regions = None if cfg.allow_overlap else list(complements)
            enc, _ = self._block_mask(g, e_size, regions)
            all_pred.append(preds)
            all_enc.append(enc)
        keep_pred = min(len(m) for preds in all_pred for m in preds)
        keep_enc = min(len(m) for m in all_enc)
        pred = torch.stack([torch.stack([m[:keep_pred] for m in preds]) for preds in all_pred], dim=1)
        enc = torch.stack([m[:keep_enc] for m in all_enc])
        return enc, pred

    def _block_size(self, g: torch.Generator, scale, aspect) -> tuple[int, int]:
        # One uniform draw sets both scale and aspect ratio, as in the I-JEPA release.
        return self._size_at(torch.rand(1, generator=g).item(), scale, aspect)

    def _size_at(self, r: float, scale, aspect) -> tuple[int, int]:
        max_keep = int(self.height * self.width * (scale[0] + r * (scale[1] - scale[0])))
        ratio = aspect[0] + r * (aspect[1] - aspect[0])
        h = min(max(int(round(math.sqrt(max_keep * ratio))), 1), self.height - 1)
        w = min(max(int(round(math.sqrt(max_keep / ratio))), 1), self.width - 1)
        return h, w

    def _block_mask(self, g: torch.Generator, size, regions=None) -> tuple[torch.Tensor, torch.Tensor]:
        """One block at a random position → (kept patch indices, complement map). With `regions`,
        the block is cut to them; after 20 failures to keep > min_keep patches one region is
        dropped from the constraint (as in the release)."""
        h, w = size
        tries, timeout = 0, 20
        while True:
            top = int(torch.randint(0, self.height - h + 1, (1,), generator=g))
            left = int(torch.randint(0, self.width - w + 1, (1,), generator=g))
            mask = torch.zeros((self.height, self.width), dtype=torch.int32)
            mask[top:top + h, left:left + w] = 1
            if regions is not None:
                for region in regions[:max(len(regions) - tries, 0)]:
                    mask *= region
            idx = torch.nonzero(mask.flatten()).squeeze(1)
            if len(idx) > self.cfg.min_keep:
                break
            timeout -= 1
            if timeout == 0:
                tries, timeout = tries + 1, 20
        complement = torch.ones((self.height, self.width), dtype=torch.int32)
        complement[top:top + h, left:left + w] = 0
        return idx, complement
