"""The pose convention is DiffDRR's: checked against DiffDRR's own code, not restated."""

import numpy as np
import pytest
import torch
from diffdrr.detector import Detector as DiffDRRDetector
from diffdrr.pose import convert

from drrkit.geometry.poses import REORIENT, PoseSet, euler_to_matrix


def random_poses(n=8, seed=0) -> PoseSet:
    rng = np.random.default_rng(seed)
    return PoseSet(rng.uniform(-np.pi, np.pi, (n, 3)), rng.normal(0, 300, (n, 3)))


def test_extrinsic_matches_diffdrr_convert():
    poses = random_poses()
    ref = convert(torch.tensor(poses.rotations), torch.tensor(poses.translations),
                  parameterization="euler_angles", convention="ZXY").matrix.numpy()
    np.testing.assert_allclose(poses.extrinsics(), ref, atol=1e-9)


def test_euler_matrix_is_rz_rx_ry():
    a = np.array([[0.3, 0.0, 0.0]])
    expected = np.array([[np.cos(0.3), -np.sin(0.3), 0], [np.sin(0.3), np.cos(0.3), 0], [0, 0, 1]])
    np.testing.assert_allclose(euler_to_matrix(a)[0], expected, atol=1e-12)


@pytest.mark.parametrize("orientation", ["AP", "PA"])
def test_source_and_detector_positions_match_diffdrr(orientation):
    poses = random_poses(4, seed=1)
    det = DiffDRRDetector(1020.0, 5, 7, 2.0, 2.0, 0.0, 0.0, torch.tensor(REORIENT[orientation], dtype=torch.float32),
                          reverse_x_axis=True)
    pose = convert(torch.tensor(poses.rotations, dtype=torch.float32),
                   torch.tensor(poses.translations, dtype=torch.float32),
                   parameterization="euler_angles", convention="ZXY")
    source, target = det(pose, None)
    np.testing.assert_allclose(poses.source_positions(orientation), source[:, 0].numpy(), atol=1e-3)
    # The detector centre lies sdd along the camera +z axis.
    c2w = poses.camera_to_world(orientation)
    centre = c2w[:, :3, 3] + 1020.0 * c2w[:, :3, 2]
    np.testing.assert_allclose(centre, target.mean(dim=1).numpy(), atol=1e-2)


def test_xwin_frontal_pose_is_ap_with_source_anterior():
    poses = PoseSet(np.zeros((1, 3)), np.array([[0.0, 700.0, 0.0]]))
    np.testing.assert_allclose(poses.source_positions("AP")[0], [0, 700, 0], atol=1e-9)
    view_dir = poses.camera_to_world("AP")[0, :3, 2]
    np.testing.assert_allclose(view_dir, [0, -1, 0], atol=1e-12)  # looking posteriorly
    # +90° about the superior axis moves the source to the patient's left (RAS +x is the right).
    lateral = PoseSet(np.array([[np.pi / 2, 0, 0]]), np.array([[0.0, 700.0, 0.0]]))
    np.testing.assert_allclose(lateral.source_positions("AP")[0], [-700, 0, 0], atol=1e-9)


def test_poseset_validates_shape_and_values():
    with pytest.raises(ValueError, match="shape"):
        PoseSet(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        PoseSet(np.full((1, 3), np.nan), np.zeros((1, 3)))
    assert len(random_poses(5)[1:3]) == 2
