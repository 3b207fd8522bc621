"""Header corrections a manifest supplies for NIfTI files whose own headers are wrong.

Some public collections ship NIfTI volumes whose header does not describe the data: CT-RATE's
files hold the scanner's stored values without scl_slope/scl_inter and give the Hounsfield
rescale and the voxel spacing in a separate metadata table (RescaleSlope, RescaleIntercept,
XYSpacing, ZSpacing), which every pipeline that reads them applies by hand. A manifest may carry
them per CT, in these columns:

  rescale_slope, rescale_intercept   HU = stored value × slope + intercept (both, or neither).
                                     The file's own scl_slope/scl_inter must be unset (1 and 0):
                                     two scalings of one file are refused, not combined.
  spacing                            voxel size in mm along the file's voxel axes i, j, k
                                     ("0.75 0.75 1.5", commas or brackets allowed). Replaces
                                     the column lengths of the header's affine; its direction
                                     cosines and origin are kept.

The columns are also stored as they were given (cts/extra/<column>), so a store says exactly how
each CT was read, and a resumed run with other values is refused.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

COLUMNS = ("rescale_slope", "rescale_intercept", "spacing")


class OverrideError(ValueError):
    """A manifest value that cannot be used as a header correction."""


@dataclass(frozen=True)
class HeaderOverride:
    rescale_slope: float | None = None
    rescale_intercept: float | None = None
    spacing: tuple[float, float, float] | None = None

    @property
    def rescales(self) -> bool:
        return self.rescale_slope is not None

    def describe(self) -> dict:
        return {"rescale_slope": self.rescale_slope, "rescale_intercept": self.rescale_intercept,
                "spacing": list(self.spacing) if self.spacing else None}

    def affine(self, affine: np.ndarray) -> np.ndarray:
        """`affine` with its voxel axes scaled to `spacing` (directions and origin kept)."""
        if self.spacing is None:
            return affine
        out = np.array(affine, dtype=np.float64)
        norms = np.linalg.norm(out[:3, :3], axis=0)
        out[:3, :3] = out[:3, :3] / norms * np.asarray(self.spacing, dtype=np.float64)
        return out


def _number(text: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise OverrideError(f"{column} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise OverrideError(f"{column} {text!r} is not finite")
    return value


def parse_override(row: dict) -> HeaderOverride | None:
    """The correction a manifest row asks for (None: none). Raises OverrideError naming the column."""
    given = {c: (row.get(c) or "").strip() for c in COLUMNS}
    if not any(given.values()):
        return None
    slope = intercept = spacing = None
    if bool(given["rescale_slope"]) != bool(given["rescale_intercept"]):
        missing = "rescale_intercept" if given["rescale_slope"] else "rescale_slope"
        raise OverrideError(f"rescale_slope and rescale_intercept go together; {missing} is empty")
    if given["rescale_slope"]:
        slope = _number(given["rescale_slope"], "rescale_slope")
        intercept = _number(given["rescale_intercept"], "rescale_intercept")
        if slope == 0:
            raise OverrideError("rescale_slope is 0")
    if given["spacing"]:
        parts = [p for p in re.split(r"[\s,\[\]()]+", given["spacing"]) if p]
        if len(parts) != 3:
            raise OverrideError(f"spacing {given['spacing']!r} needs 3 values (mm along voxel axes i, j, k)")
        spacing = tuple(_number(p, "spacing") for p in parts)
        if min(spacing) <= 0:
            raise OverrideError(f"spacing {given['spacing']!r} must be positive")
    return HeaderOverride(slope, intercept, spacing)
