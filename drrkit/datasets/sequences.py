"""Xray2Xray: transitions (view_t, action_t, view_t+1) along each CT's ordered view sequence."""

from __future__ import annotations

import numpy as np

from drrkit.datasets.base import StoreDataset


def wrap_angle(a: np.ndarray) -> np.ndarray:
    """Angles in (−π, π]."""
    return -((-np.asarray(a) + np.pi) % (2 * np.pi) - np.pi)


class TransitionDataset(StoreDataset):
    """Consecutive views of each rendered CT. `action` = (Δrotation (3, radians, wrapped to
    (−π, π]), Δtranslation (3, mm)) from view t to view t+1 in the store's pose convention.
    With `wrap=True` and a sequence covering the full circle, the last view steps to the first."""

    def __init__(self, store, wrap: bool = True):
        super().__init__(store)
        first = self.rows_of(self.done_cts[0])
        yaw = np.asarray(self.corpus.root["rotation"][first.start:first.stop])[:, 0]
        step = np.median(np.abs(np.diff(yaw))) if len(yaw) > 1 else 0.0
        full_circle = len(yaw) > 1 and abs(len(yaw) * step - 2 * np.pi) < 1e-6
        self.pairs = []
        for ct in self.done_cts:
            rows = list(self.rows_of(ct))
            nxt = rows[1:] + (rows[:1] if wrap and full_circle else [])
            self.pairs += [(ct, a, b) for a, b in zip(rows, nxt)]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        import torch

        ct, a, b = self.pairs[i]
        c = self.corpus
        d_rot = wrap_angle(np.asarray(c.root["rotation"][b]) - np.asarray(c.root["rotation"][a]))
        d_tra = np.asarray(c.root["translation"][b]) - np.asarray(c.root["translation"][a])
        return {"view_t": self.image(a), "action": torch.tensor(np.concatenate([d_rot, d_tra]), dtype=torch.float32),
                "view_next": self.image(b), "ct_id": self.ct_ids[ct], "rows": (a, b)}
