"""ChexGen: radiographs with their projected structure masks and boxes."""

from __future__ import annotations

import numpy as np

from drrkit.datasets.base import StoreDataset


class MaskedViewDataset(StoreDataset):
    """One item per rendered view: image (1, H, W), masks (C, H, W) uint8, boxes (C, 4) in pixels
    ([x_min, y_min, x_max, y_max), NaN for structures absent from the CT), channel names."""

    def __init__(self, store):
        super().__init__(store)
        if self.corpus.masks is None:
            raise ValueError(f"{self.store}: this store has no masks; render it with a recipe that has "
                             f"a 'masks:' section (e.g. recipes/chexgen.yaml)")
        self.channels = self.corpus.mask_channels
        self.rows = [r for ct in self.done_cts for r in self.rows_of(ct)]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        import torch

        row = self.rows[i]
        c = self.corpus
        return {"image": self.image(row), "masks": torch.from_numpy(np.asarray(c.masks[row])),
                "boxes": torch.from_numpy(np.asarray(c.bboxes[row], dtype=np.float32)),
                "channels": self.channels, "row": row}
