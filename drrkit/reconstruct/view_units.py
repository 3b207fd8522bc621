"""From a model's normalised images back to line integrals, the units FDK needs.

X-WIN trains on per-image display-scaled views (the train config's `data.intensity`):
minmax  m = (p − lo_k) / (hi_k − lo_k), with lo_k, hi_k the min and max of view k's line integrals p;
robust  the same with the 0.5/99.5 percentiles, clipped to [0, 1]
(drrkit.train.transforms.display_range). The decoder therefore predicts every view in [0, 1] of
its *own* range, and lo_k, hi_k of a predicted view are unknown. Inverting is p = lo + m·span_k;
what `span_k` is taken to be is the units choice, recorded in every report:

  mass     (default) lo = the frontal input's lo; span_k such that every view carries the same
           cosine-weighted total  Σ_pixels p·cos θ  as the frontal input view (θ: the ray's angle to
           the detector normal). For parallel rays this total is the object's mass at every angle;
           for a cone beam it is D²·∫ f(x)/w(x)² dx (w: depth along the central ray), constant to
           within a few percent for a body near the isocentre (measured on DRRs: 2–8 % between the
           frontal and the lateral views, larger when the body is truncated by the detector).
  frontal  span_k = the frontal input's hi − lo for every view. Simple, but a lateral chest DRR's
           maximum is up to ~40 % higher than the frontal's (measured on the bundled chest CT), so
           lateral views come out too faint.
  oracle   each view's own true lo_k, hi_k from the store's DRR: uses the truth, so it is a
           diagnostic (exact units; only the model's shape errors remain), never a prediction.

The frontal input's lo and hi are known for a store's view (the stored DRR). A radiograph file
(--cxr) carries no line-integral scale: lo is taken as 0 (air) and hi − lo as `scale` mm, 1 unless
the user gives it, so its volume is in relative units (density × an unknown constant); with a
truth volume only scale-fitted metrics mean anything then.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drrkit.reconstruct.geometry import ConeBeamGeometry
from drrkit.reconstruct.inputs import ReconstructError

UNITS = ("mass", "frontal", "oracle")


@dataclass(frozen=True)
class FrontalRange:
    """The frontal input's display range in line-integral mm: lo ↦ 0 and hi ↦ 1 in model space."""

    lo: float
    hi: float
    known: bool  # False: a radiograph file whose scale is assumed (relative units)
    how: str  # where lo and hi come from, for the report

    def describe(self) -> dict:
        return {"lo_mm": self.lo, "hi_mm": self.hi, "scale_known": self.known, "source": self.how}


def check_units(units: str) -> str:
    if units not in UNITS:
        raise ValueError(f"units must be one of {UNITS}, got {units!r}")
    return units


def cosine_weights(geometry: ConeBeamGeometry) -> np.ndarray:
    """(N, H, W) cos θ of every pixel's ray to its detector's normal."""
    u, v = geometry.pixel_offsets_mm()
    d = geometry.sdd[:, None, None]
    return d / np.sqrt(d ** 2 + u[:, None, :] ** 2 + v[:, :, None] ** 2)


def to_line_integrals(predicted: np.ndarray, geometry: ConeBeamGeometry, units: str, frontal: FrontalRange,
                      frontal_input: np.ndarray, true_ranges: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """(images (K, S, S) in line-integral mm, details) of predicted model-space views (K, S, S).

    `geometry` holds the K views at the model's resolution; `frontal_input` (S, S) is the model's
    input in model space, taken with view 0's detector; `true_ranges` (K, 2) the true (lo, hi) of
    each view (oracle units only). Predictions are clipped to [0, 1], the range of the training
    targets, first."""
    check_units(units)
    m = np.clip(np.asarray(predicted, dtype=np.float64), 0.0, 1.0)
    k = len(m)
    if m.shape != (k, geometry.height, geometry.width) or k != len(geometry):
        raise ValueError(f"predicted views {m.shape} do not match the geometry "
                         f"({len(geometry)}, {geometry.height}, {geometry.width})")
    lo = np.full(k, frontal.lo)
    if units == "frontal":
        span = np.full(k, frontal.hi - frontal.lo)
    elif units == "oracle":
        if true_ranges is None:
            raise ReconstructError("oracle units need the true views' ranges (a store's CT)")
        lo, span = true_ranges[:, 0].astype(np.float64), np.diff(true_ranges, axis=1)[:, 0].astype(np.float64)
    else:
        span = _mass_spans(m, cosine_weights(geometry), frontal, frontal_input)
    images = lo[:, None, None] + m * span[:, None, None]
    return images.astype(np.float32), {"lo_mm": lo.tolist(), "span_mm": span.tolist()}


def _mass_spans(m: np.ndarray, cos: np.ndarray, frontal: FrontalRange, frontal_input: np.ndarray) -> np.ndarray:
    """span_k with Σ cos·(lo + m_k·span_k) = Σ cos·(frontal input in mm), per view."""
    c0 = cos[0]
    reference = float(np.sum(c0 * (frontal.lo + np.clip(frontal_input, 0, 1) * (frontal.hi - frontal.lo))))
    weighted = np.einsum("khw,khw->k", cos, m)
    excess = reference - frontal.lo * cos.sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        span = excess / weighted
    bad = ~np.isfinite(span) | (span <= 0)
    if bad.any():
        raise ReconstructError(f"mass-preserving units fail for {int(bad.sum())} of {len(m)} predicted views "
                         f"(a blank predicted view, or a frontal input without contrast); "
                         f"use --units frontal")
    return span
