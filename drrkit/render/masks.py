"""Projected structure masks and bounding boxes (ChexGen-style) from a CT's label map.

Each channel's indicator volume (1 inside its structures) is integrated along the same rays as the
image, giving the path length (mm) through the channel; the mask is path > threshold_mm. Boxes are
[x_min, y_min, x_max, y_max) in pixel units (column, row; max exclusive), NaN where a mask is empty.
"""

from __future__ import annotations

import numpy as np

from drrkit.ct.labels import LabelMapError, channel_indicators, load_label_map, read_structures
from drrkit.ct.volume import CTVolume
from drrkit.geometry.poses import PoseSet
from drrkit.render.base import render_all

BOX_FORMAT = "[x_min, y_min, x_max, y_max): pixel columns/rows, max exclusive; NaN where the mask is empty"


def project_masks(renderer, ct: CTVolume, poses: PoseSet, label_path: str | None, spec
                  ) -> tuple[np.ndarray, np.ndarray, dict[str, list[str]]]:
    """(masks uint8 (V, C, H, W), boxes float32 (V, C, 4), channel → matched structure names)."""
    if label_path is None:
        raise LabelMapError(ct.source, "the recipe asks for masks but this CT has no label map (looked for "
                                       "labels/<CT file name> beside it, --labels DIR, or a manifest 'labels' column)")
    labels = load_label_map(label_path, ct)
    indicators = channel_indicators(labels, read_structures(label_path), spec.channels)
    det_shape = None
    masks, matched = [], {}
    for channel, (indicator, names) in indicators.items():
        matched[channel] = names
        if names:
            path_mm = render_all(renderer, ct, poses, field=indicator)
            det_shape = path_mm.shape
            masks.append(path_mm > spec.threshold_mm)
        else:
            masks.append(None)
    if det_shape is None:
        raise LabelMapError(label_path, f"no structure matches any mask channel {list(spec.channels)}")
    stacked = np.stack([m if m is not None else np.zeros(det_shape, bool) for m in masks], axis=1)
    return stacked.astype(np.uint8), boxes_from_masks(stacked), matched


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """(V, C, H, W) boolean masks → (V, C, 4) boxes [x_min, y_min, x_max, y_max), NaN if empty."""
    V, C = masks.shape[:2]
    boxes = np.full((V, C, 4), np.nan, dtype=np.float32)
    rows_any, cols_any = masks.any(axis=3), masks.any(axis=2)  # (V, C, H), (V, C, W)
    for v in range(V):
        for c in range(C):
            rows, cols = np.flatnonzero(rows_any[v, c]), np.flatnonzero(cols_any[v, c])
            if rows.size:
                boxes[v, c] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes
