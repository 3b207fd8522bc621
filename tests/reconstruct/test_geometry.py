"""Rays of `ConeBeamGeometry.from_poses` are DiffDRR's, pixel for pixel."""

import numpy as np
import pytest
import torch
from diffdrr.detector import Detector as DiffDRRDetector
from diffdrr.pose import convert

from drrkit.geometry.detector import Detector
from drrkit.geometry.poses import REORIENT, PoseSet
from drrkit.reconstruct.geometry import ConeBeamGeometry
from drrkit.reconstruct.trajectory import TrajectoryError, fit_circular, parker, redundancy_weights
from tests.reconstruct.helpers import scan, yaw_poses

DETECTORS = [Detector(1020.0, 5, 7, 2.0, 1.5, 3.0, -2.0, True), Detector(900.0, 6, 4, 1.0, 2.5, -1.0, 4.0, False),
             Detector(1020.0, 8, 8, 3.0, 3.0)]


def random_poses(n=5, seed=0) -> PoseSet:
    rng = np.random.default_rng(seed)
    return PoseSet(rng.uniform(-np.pi, np.pi, (n, 3)), rng.normal(0, 300, (n, 3)))


@pytest.mark.parametrize("orientation", ["AP", "PA"])
@pytest.mark.parametrize("det", DETECTORS, ids=["odd-reversed-offset", "even-plain-offset", "square"])
def test_sources_and_pixels_match_diffdrr(det, orientation):
    poses = random_poses()
    ref = DiffDRRDetector(det.sdd, det.height, det.width, det.delx, det.dely, det.x0, det.y0,
                          torch.tensor(REORIENT[orientation]), reverse_x_axis=det.reverse_x_axis).double()
    pose = convert(torch.tensor(poses.rotations), torch.tensor(poses.translations),
                   parameterization="euler_angles", convention="ZXY")
    source, target = ref(pose, None)
    geo = ConeBeamGeometry.from_poses(poses, det, orientation)
    np.testing.assert_allclose(geo.source, source[:, 0].numpy(), atol=1e-9)
    np.testing.assert_allclose(geo.pixel_positions().reshape(len(poses), -1, 3), target.numpy(), atol=1e-9)
    np.testing.assert_allclose(geo.sdd, det.sdd, rtol=1e-12)


def test_projection_inverts_pixel_positions():
    geo = ConeBeamGeometry.from_poses(random_poses(3, seed=2), DETECTORS[0], "AP")
    pix = geo.pixel_positions()
    mid = geo.source[:, None, None] + 0.4 * (pix - geo.source[:, None, None])  # points on the rays
    for view in range(3):
        col, row, depth = geo.subset(view).project(mid[view].reshape(-1, 3))
        np.testing.assert_allclose(col[0], np.tile(np.arange(geo.width), geo.height), atol=1e-9)
        np.testing.assert_allclose(row[0], np.repeat(np.arange(geo.height), geo.width), atol=1e-9)
        np.testing.assert_allclose(depth[0], 0.4 * geo.sdd[view], rtol=1e-9)


def test_binned_and_transposed_geometry():
    geo = scan(4, detector=Detector(1000.0, 6, 8, 2.0, 2.0))
    binned = geo.binned(2)
    pix = geo.pixel_positions()
    np.testing.assert_allclose(binned.pixel_positions(), pix.reshape(4, 3, 2, 4, 2, 3).mean(axis=(2, 4)), atol=1e-9)
    np.testing.assert_allclose(geo.transposed().pixel_positions(), pix.transpose(0, 2, 1, 3), atol=1e-12)


def test_trajectory_kinds_and_axis():
    full = fit_circular(scan(36))
    assert full.kind == "full" and abs(full.axis @ [0, 0, 1]) > 0.999 and np.allclose(full.radius, 700)
    assert fit_circular(scan(61, 180.0)).kind == "short"
    assert fit_circular(scan(30, 120.0)).kind == "limited"
    # yaw decreasing: the axis flips so that source angles still increase
    backwards = fit_circular(ConeBeamGeometry.from_poses(yaw_poses(20, 200.0)[::-1], Detector(1020, 8, 8, 5, 5)))
    assert np.all(np.diff(backwards.angles) > 0)


def test_trajectory_errors():
    with pytest.raises(TrajectoryError, match="at least 3 views"):
        fit_circular(scan(2))
    same = PoseSet(np.zeros((4, 3)), np.tile([0.0, 700.0, 0.0], (4, 1)))
    with pytest.raises(TrajectoryError, match="collinear or identical"):
        fit_circular(ConeBeamGeometry.from_poses(same, Detector(1020, 8, 8, 5, 5)))


@pytest.mark.parametrize("delta_deg", [0.0, 5.0, 20.0])
def test_parker_weights_of_conjugate_rays_sum_to_one(delta_deg):
    """(β, γ) and (β + π + 2γ, -γ) are the same line: where both are measured their weights sum to 1."""
    rng = np.random.default_rng(0)
    delta = np.radians(delta_deg)
    beta = rng.uniform(0, np.pi + 2 * delta, 4000)
    gamma = rng.uniform(-0.3, 0.3, 4000)
    beta2 = beta + np.pi + 2 * gamma
    beta2 = np.where(beta2 > np.pi + 2 * delta, beta2 - 2 * np.pi, beta2)
    both = (beta2 >= 0) & (beta2 <= np.pi + 2 * delta)
    total = parker(beta, gamma, delta) + parker(beta2, -gamma, delta)
    np.testing.assert_allclose(total[both], 1.0, atol=1e-9)
    alone = parker(beta, gamma, delta)[~both]  # conjugate never measured (short of π + fan): weight 1
    np.testing.assert_allclose(alone, 1.0, atol=1e-9)


def test_redundancy_weights_by_scan_kind():
    assert np.all(redundancy_weights(scan(36), fit_circular(scan(36))) == 0.5)
    short = scan(61, 180.0)
    w = redundancy_weights(short, fit_circular(short))
    assert w.shape == (61, 64) and w.min() >= 0 and w.max() <= 1
    # 180° scan (δ = 0): at the first view the rays whose conjugate comes at β = π + 2γ > π (never)
    # keep weight 1, the others 0; mirrored columns (γ ↔ -γ) are complementary
    np.testing.assert_allclose(w[0] + w[0, ::-1], 1.0, atol=1e-12)
    np.testing.assert_allclose(w[-1] + w[-1, ::-1], 1.0, atol=1e-12)
