"""X2CT-CLIP: (CT, radiographs, report) triplets: every rendered view of a CT plus its manifest text."""

from __future__ import annotations

import numpy as np

from drrkit.datasets.base import StoreDataset


class TripletDataset(StoreDataset):
    """One item per rendered CT: its id and source path (the CT volume, for a 3D encoder), its
    views (V, H, W) in recipe order, the `report_column` text and all other manifest columns."""

    def __init__(self, store, report_column: str = "report"):
        super().__init__(store)
        extra = self.corpus.root["cts"].get("extra")
        self.columns = sorted(extra.array_keys()) if extra is not None else []
        if report_column not in self.columns:
            raise ValueError(f"{self.store}: no manifest column {report_column!r} (have {self.columns}); "
                             f"render with --manifest carrying a '{report_column}' column")
        self.report_column = report_column

    def __len__(self) -> int:
        return len(self.done_cts)

    def __getitem__(self, i: int) -> dict:
        import torch

        ct = self.done_cts[i]
        rows = self.rows_of(ct)
        root = self.corpus.root
        views = torch.from_numpy(np.asarray(self.corpus.images[rows.start:rows.stop], dtype=np.float32))
        fields = {col: str(root[f"cts/extra/{col}"][ct]) for col in self.columns}
        return {"ct_id": self.ct_ids[ct], "ct_path": str(root["cts/source"][ct]), "views": views,
                "report": fields.pop(self.report_column), "fields": fields}
