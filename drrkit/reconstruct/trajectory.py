"""What FDK needs to know about a source trajectory: its rotation axis, the source angle of every
view, the angular quadrature, and how redundant each measured ray is (full scan / Parker short
scan / limited angle).

The trajectory is taken to be circular-ish about an axis through the world origin (the volume
isocentre): the axis is the normal of the plane that best fits the source positions, oriented so
that the source angle increases from the first view to the last. Each view keeps its own
source-to-isocentre distance R_i and source-to-detector distance D_i, so mildly irregular orbits
reconstruct with the right magnification.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drrkit.reconstruct.geometry import ConeBeamGeometry

TWO_PI = 2 * np.pi


class TrajectoryError(ValueError):
    """The views cannot be reconstructed with FDK (too few, collinear sources, odd detector axes)."""


@dataclass(frozen=True, eq=False)
class CircularTrajectory:
    axis: np.ndarray  # (3,) unit rotation axis, source angle increases about it
    angles: np.ndarray  # (N,) radians, unwrapped, view order, angles[0] = 0
    radius: np.ndarray  # (N,) source-to-isocentre distance along each central ray (R_i), mm
    kind: str  # "full" | "short" | "limited"

    @property
    def span(self) -> float:
        return float(self.angles.max() - self.angles.min())

    def describe(self) -> dict:
        return {"kind": self.kind, "span_deg": float(np.degrees(self.span)), "views": int(len(self.angles)),
                "axis": self.axis.tolist(), "radius_mm": [float(self.radius.min()), float(self.radius.max())]}


def fit_circular(geometry: ConeBeamGeometry, min_views: int = 3) -> CircularTrajectory:
    """Rotation axis, per-view angles, radii and scan kind of `geometry`'s source trajectory."""
    src = geometry.source
    if len(src) < min_views:
        raise TrajectoryError(f"FDK needs at least {min_views} views on a circular-ish orbit, got {len(src)}")
    _, sing, vt = np.linalg.svd(src - src.mean(axis=0))
    if sing[1] < 1e-6 * max(sing[0], 1e-12):
        raise TrajectoryError("the source positions are collinear or identical: not a rotation")
    axis = vt[2]
    angles = _unwrapped_angles(src, axis)
    if angles[-1] < angles[0]:
        axis, angles = -axis, -angles
    radius = -np.einsum("ni,ni->n", geometry.normal, geometry.source)
    if np.any(radius <= 0):
        raise TrajectoryError("the isocentre (world origin) must lie in front of every source")
    gaps = np.diff(np.sort(angles))
    step = float(np.median(gaps)) if len(gaps) else 0.0
    span = float(angles.max() - angles.min())
    kind = "full" if span + 1.5 * step >= TWO_PI else "short" if span >= np.pi * (1 - 1e-6) else "limited"
    return CircularTrajectory(axis=axis, angles=angles, radius=radius, kind=kind)


def _unwrapped_angles(src: np.ndarray, axis: np.ndarray) -> np.ndarray:
    inplane = src - np.outer(src @ axis, axis)
    e1 = inplane[0] / np.linalg.norm(inplane[0])
    e2 = np.cross(axis, e1)
    raw = np.arctan2(inplane @ e2, inplane @ e1)
    unwrapped = np.unwrap(raw)
    return unwrapped - unwrapped[0]


def angular_weights(traj: CircularTrajectory) -> np.ndarray:
    """(N,) quadrature weight Δβ_i (radians) of each view: half the gaps to its angular neighbours
    (periodic for a full scan, trapezoid ends otherwise)."""
    order = np.argsort(traj.angles)
    beta = traj.angles[order]
    if len(beta) == 1:
        return np.array([np.pi])
    if traj.kind == "full":
        ext = np.concatenate([[beta[-1] - TWO_PI], beta, [beta[0] + TWO_PI]])
        w_sorted = (ext[2:] - ext[:-2]) / 2
    else:
        ext = np.concatenate([[beta[0]], beta, [beta[-1]]])
        w_sorted = (ext[2:] - ext[:-2]) / 2
    out = np.empty_like(w_sorted)
    out[order] = w_sorted
    return out


def fan_angles(geometry: ConeBeamGeometry, traj: CircularTrajectory) -> np.ndarray:
    """(N, W) in-plane fan angle γ of every detector column, positive in the sense of increasing
    source angle (the ray (β, γ) and the ray (β + π + 2γ, -γ) are the same line)."""
    u, _ = geometry.pixel_offsets_mm()
    col = geometry.col_step / np.linalg.norm(geometry.col_step, axis=1, keepdims=True)
    sense = np.einsum("i,ni->n", traj.axis, np.cross(geometry.normal, col))
    return np.arctan2(sense[:, None] * u, geometry.sdd[:, None])


def redundancy_weights(geometry: ConeBeamGeometry, traj: CircularTrajectory) -> np.ndarray:
    """(N, W) weight of every measured ray so that the two measurements of a line sum to one:
    1/2 on a full scan; Parker's on a short scan; 1 on a limited-angle scan (no redundancy
    handling; the missing wedge of directions is simply missing).

    Short scans use Parker's weights with δ = (span - π)/2, clipped at 0 (Wesarg et al. 2002). When
    the span is shorter than π + fan angle (X-WIN's 180° is), rays at |γ| > δ have no conjugate
    for a wedge of |γ| - δ of directions: they keep weight 1 there, and the outer part of the
    field of view is reconstructed from incomplete data (streaks, loss of edges along the missing
    directions); only the centre of the field of view gets complete data.
    """
    n, w = len(geometry), geometry.width
    if traj.kind == "full":
        return np.full((n, w), 0.5)
    if traj.kind == "limited":
        return np.ones((n, w))
    beta = (traj.angles - traj.angles.min())[:, None]
    gamma = fan_angles(geometry, traj)
    delta = max(0.0, (traj.span - np.pi) / 2)
    return parker(beta, gamma, delta)


def parker(beta: np.ndarray, gamma: np.ndarray, delta: float) -> np.ndarray:
    """Parker (1982) short-scan weights for source angle β ∈ [0, π + 2δ] and fan angle γ."""
    beta, gamma = np.broadcast_arrays(beta, gamma)
    out = np.ones(beta.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        rise = beta < 2 * delta - 2 * gamma
        out[rise] = np.sin(np.pi / 4 * beta[rise] / (delta - gamma[rise])) ** 2
        fall = beta > np.pi - 2 * gamma
        out[fall] = np.sin(np.pi / 4 * (np.pi + 2 * delta - beta[fall]) / (delta + gamma[fall])) ** 2
    out[beta > np.pi + 2 * delta + 1e-9] = 0.0
    return np.nan_to_num(out, nan=0.0)
