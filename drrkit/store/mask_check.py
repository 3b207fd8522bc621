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


def rerender_masks_with_diffdrr(corpus: Corpus, rows, device: str = "cpu", ct_path: str | None = None,
                                patch_size: int | None = None) -> np.ndarray:
    """(V, C, H, W) bool masks of stored rows of one CT, by plain DiffDRR (see the module doc)."""
    import torch
    from diffdrr.data import read
    from diffdrr.drr import DRR
    from torchio import ScalarImage

    from drrkit.ct.discover import load_recorded_ct
    from drrkit.ct.labels import load_label_map, read_structures

    rows = np.atleast_1d(np.arange(len(corpus))[rows])
    k = int(corpus.root["ct_index"][int(rows[0])])
    row = corpus.ct_table()[k]
    source = ct_path or str(source_path(row["source"], corpus.path))
    ct = load_recorded_ct(source, row["id"], corpus.header_override(k))
    label_path = source_path(row["labels"], corpus.path)
    labels = load_label_map(label_path, ct)
    values = read_structures(label_path)
    matched = json.loads(row["mask_structures"] or "{}")
    spec = corpus.recipe.masks
    pose = corpus.poses(rows)
    det = corpus.attrs["detector"]
    out = np.zeros((len(rows), len(corpus.mask_channels), det["height"], det["width"]), dtype=bool)
    hu = torch.from_numpy(np.ascontiguousarray(ct.hu))[None]
    for c, channel in enumerate(corpus.mask_channels):
        names = matched.get(channel, [])
        if not names:
            continue
        subject = read(ScalarImage(tensor=hu, affine=ct.affine), **corpus.diffdrr_read_kwargs())
        indicator = np.isin(labels, [values[n] for n in names]).astype(np.float32)
        subject.density.set_data(torch.from_numpy(indicator)[None])
        drr = DRR(subject, **det, patch_size=patch_size).to(device)
        for v in range(len(rows)):
            with torch.no_grad():
                path_mm = drr(torch.tensor(pose.rotations[v:v + 1], dtype=torch.float32, device=device),
                              torch.tensor(pose.translations[v:v + 1], dtype=torch.float32, device=device),
                              parameterization=corpus.attrs["pose_convention"]["parameterization"],
                              convention=corpus.attrs["pose_convention"]["convention"])
            out[v, c] = path_mm[0, 0].cpu().numpy() > spec.threshold_mm
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
