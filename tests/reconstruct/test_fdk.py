"""FDK recovers an analytic ball's density (exact line integrals) on full and short scans."""

import numpy as np
import pytest

from drrkit.geometry.detector import Detector
from drrkit.geometry.poses import PoseSet
from drrkit.reconstruct.fdk import FDKConfig, fdk, ramp_response
from drrkit.reconstruct.geometry import ConeBeamGeometry
from drrkit.reconstruct.trajectory import TrajectoryError
from tests.reconstruct.helpers import ball_line_integrals, box_grid, scan

CENTRE, RADIUS, DENSITY = np.array([20.0, -30.0, 40.0]), 100.0, 0.5


def ball_regions(grid):
    x = grid.voxel_centres("store")
    dist = np.linalg.norm(x - CENTRE, axis=-1)
    return dist < 0.7 * RADIUS, (dist > 1.3 * RADIUS) & (np.abs(x[..., 2]) < 100)


@pytest.mark.parametrize("views, span, tol_mean, tol_std", [(90, 360.0, 0.01, 0.02), (60, 220.0, 0.01, 0.02),
                                                            (61, 180.0, 0.05, 0.12)],
                         ids=["full", "short-parker", "xwin-180"])
def test_ball_density_recovered(views, span, tol_mean, tol_std):
    geo = scan(views, span)
    grid = box_grid(32)
    res = fdk(ball_line_integrals(geo, CENTRE, RADIUS, DENSITY), geo, grid)
    inner, outer = ball_regions(grid)
    assert abs(res.volume[inner].mean() / DENSITY - 1) < tol_mean
    assert res.volume[inner].std() / DENSITY < tol_std
    assert abs(res.volume[outer].mean()) < 0.02 * DENSITY
    assert res.trajectory.kind == {360.0: "full", 220.0: "short", 180.0: "short"}[span]


def test_grid_centre_offset_and_windows():
    """A CT whose centre is not at RAS 0: the store frame is world_ct - centre; windows keep the mean."""
    geo = scan(72)
    grid = box_grid(24, spacing=(16.0, 16.0, 14.0), centre=(100.0, -50.0, 30.0))
    images = ball_line_integrals(geo, CENTRE, RADIUS, DENSITY)
    inner, _ = ball_regions(grid)
    for window in ("shepp-logan", "cosine", "hann"):
        vol = fdk(images, geo, grid, FDKConfig(filter=window)).volume
        assert abs(vol[inner].mean() / DENSITY - 1) < 0.03, window


def test_coverage_counts_views_and_chunking_is_invisible():
    geo = scan(40)
    grid = box_grid(16, spacing=(30.0, 30.0, 25.0))
    images = ball_line_integrals(geo, CENTRE, RADIUS, DENSITY)
    a = fdk(images, geo, grid, FDKConfig(coverage=True))
    b = fdk(images, geo, grid, FDKConfig(chunk_elements=5000))
    np.testing.assert_allclose(a.volume, b.volume, atol=1e-5)
    assert a.coverage.max() == 40 and a.coverage.min() < 40  # the box corners leave some views


def test_detector_rows_along_the_axis_are_transposed():
    """A scan about the patient's left-right axis (pitch): columns are parallel to it, rows across."""
    n = 72
    pitch = np.arange(n) * 2 * np.pi / n
    poses = PoseSet(np.c_[np.zeros(n), pitch, np.zeros(n)], np.tile([0.0, 700.0, 0.0], (n, 1)))
    geo = ConeBeamGeometry.from_poses(poses, Detector(1020.0, 64, 68, 10.0, 10.0), "AP")
    grid = box_grid(24, spacing=(16.0, 16.0, 14.0))
    vol = fdk(ball_line_integrals(geo, CENTRE, RADIUS, DENSITY), geo, grid).volume
    inner, _ = ball_regions(grid)
    assert abs(vol[inner].mean() / DENSITY - 1) < 0.02


def test_ramp_response_is_a_ramp():
    h = ramp_response(256, "ram-lak").numpy()
    f = np.fft.rfftfreq(256)
    assert abs(h[0]) < 2e-3  # (nearly) no DC: zero-mean kernel
    np.testing.assert_allclose(h[5:100], f[5:100], rtol=0.05)  # |f| in cycles/sample


def test_bad_inputs():
    geo = scan(10)
    grid = box_grid(8)
    with pytest.raises(ValueError, match="images have shape"):
        fdk(np.zeros((9, geo.height, geo.width)), geo, grid)
    bad = np.zeros((10, geo.height, geo.width))
    bad[3, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fdk(bad, geo, grid)
    with pytest.raises(TrajectoryError, match="at least 3 views"):
        two = scan(2)
        fdk(np.zeros((2, two.height, two.width)), two, grid)
    with pytest.raises(ValueError, match="filter must be one of"):
        FDKConfig(filter="butterworth")
