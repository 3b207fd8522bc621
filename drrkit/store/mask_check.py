"""Stored structure masks against plain DiffDRR (`drrkit verify` on a mask store).

A mask is the set of pixels whose ray travels more than the recipe's `threshold_mm` through a
channel's structures. This renders that path length again with DiffDRR's own Siddon rays from the
store's metadata alone: the CT named in cts/source, the label map in cts/labels, the structures
cts/mask_structures says each channel matched (values from the label map's structures.csv), the
recorded detector and poses. Images are checked the same way in verify.py; boxes are checked
against the stored masks there, so a mask moved, mirrored or taken from another CT fails here
even when its boxes were recomputed to match.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from drrkit.store.reader import Corpus, source_path

# Pixels on which a stored channel mask and DiffDRR's may disagree, as a fraction of the pixels
# either marks (their union). Masks come from the fast backend's path lengths; pixels whose path
# is within rounding of threshold_mm flip between renderers. Measured on the 2-core CPU
# (2026-12-04, chexgen at 48² to 128², phantoms and the bundled CT): see tests/store/test_verify.py.
MASK_MISMATCH_TOLERANCE = 0.05
MASK_MISMATCH_PIXELS = 2  # a disagreement this small passes whatever the union (single-pixel structures)


def rerender_masks_with_diffdrr(corpus: Corpus, row: dict, ct_index: int, rows, device: str = "cpu",
                                ct_path: str | None = None, patch_size: int | None = None) -> np.ndarray:
    """(V, C, H, W) bool masks of stored `rows` of CT `ct_index` (its per-CT table `row`), by
    plain DiffDRR (see the module doc): one subject on the CT's grid, each channel's indicator
    in place of its density in turn."""
    import torch
    from diffdrr.data import read
    from torchio import ScalarImage

    from drrkit.ct.discover import load_recorded_ct
    from drrkit.ct.labels import load_label_map, read_structures

    source = ct_path or str(source_path(row["source"], corpus.path))
    ct = load_recorded_ct(source, row["id"], corpus.header_override(ct_index))
    label_path = source_path(row["labels"], corpus.path)
    labels, values = load_label_map(label_path, ct), read_structures(label_path)
    matched = json.loads(row["mask_structures"] or "{}")
    subject = read(ScalarImage(tensor=torch.from_numpy(np.ascontiguousarray(ct.hu))[None], affine=ct.affine),
                   **corpus.diffdrr_read_kwargs())
    det = corpus.detector
    out = np.zeros((len(np.atleast_1d(rows)), len(corpus.mask_channels), det.height, det.width), dtype=bool)
    for c, channel in enumerate(corpus.mask_channels):
        names = matched.get(channel, [])
        if names:
            indicator = np.isin(labels, [values[n] for n in names]).astype(np.float32)
            subject.density.set_data(torch.from_numpy(indicator)[None])
            path_mm = corpus.integrate_with_diffdrr(subject, rows, device, views_per_call=1, patch_size=patch_size)
            out[:, c] = path_mm > corpus.recipe.masks.threshold_mm
    return out


def mask_disagreement(stored: np.ndarray, again: np.ndarray) -> tuple[int, int]:
    """(pixels on which two (H, W) masks differ, pixels either marks)."""
    stored, again = stored.astype(bool), again.astype(bool)
    return int((stored ^ again).sum()), int((stored | again).sum())


def masks_agree(differ: int, union: int) -> bool:
    return differ <= MASK_MISMATCH_PIXELS or differ <= MASK_MISMATCH_TOLERANCE * union


def label_map_present(corpus: Corpus, row: dict) -> Path | None:
    """The CT's recorded label map, if it names one that exists."""
    if not row.get("labels"):
        return None
    path = source_path(row["labels"], corpus.path)
    return path if path.exists() else None
