"""Shared plumbing for torch Datasets over corpus stores: lazy, fork-safe store handles."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drrkit.store.reader import Corpus, open_corpus
from drrkit.store.schema import DONE


class StoreDataset:
    """Opens the store lazily in each process (DataLoader workers fork or spawn after __init__;
    an open handle is never pickled)."""

    def __init__(self, store: str | Path):
        self.store = str(store)
        self._corpus: Corpus | None = None
        corpus = open_corpus(self.store)
        self.views_per_ct = corpus.views_per_ct
        table = corpus.ct_table()
        self.done_cts = [i for i, row in enumerate(table) if row["status"] == DONE]
        self.ct_ids = [row["id"] for row in table]
        if not self.done_cts:
            raise ValueError(f"{self.store}: no rendered (status 'done') CT in this store")

    @property
    def corpus(self) -> Corpus:
        if self._corpus is None:
            self._corpus = open_corpus(self.store)
        return self._corpus

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_corpus"] = None
        return state

    def rows_of(self, ct_index: int) -> range:
        """A CT's rows: [m·V, (m+1)·V) by the store schema."""
        return range(ct_index * self.views_per_ct, (ct_index + 1) * self.views_per_ct)

    def image(self, row: int):
        import torch

        return torch.from_numpy(np.asarray(self.corpus.images[row], dtype=np.float32))[None]
