"""The torch projector reproduces DiffDRR's Siddon line integrals, and autograd gives its adjoint."""

import numpy as np
import pytest
import torch
from diffdrr.data import read
from diffdrr.drr import DRR
from torchio import ScalarImage

from drrkit.geometry.detector import Detector
from drrkit.geometry.poses import PoseSet
from drrkit.reconstruct.geometry import ConeBeamGeometry
from drrkit.reconstruct.grid import OutputGrid
from drrkit.reconstruct.projector import JosephProjector
from tests.conftest import tiny_ct
from tests.reconstruct.helpers import box_grid, scan

DETECTOR = Detector(600.0, 24, 28, 2.5, 2.5, 3.0, -2.0, True)


def oblique_tiny():
    """tiny_ct with a flipped x axis and an off-centre origin (DiffDRR recentres it)."""
    ct = tiny_ct()
    affine = ct.affine.copy()
    affine[:3, :3] = affine[:3, :3] @ np.diag([-1.0, 1.0, 1.0])
    affine[:3, 3] += [30.0, -20.0, 10.0]
    return ct.hu, affine


def diffdrr_reference(hu, affine, poses: PoseSet):
    subject = read(ScalarImage(tensor=torch.from_numpy(hu)[None], affine=affine), orientation="AP")
    drr = DRR(subject, **DETECTOR.drr_kwargs())
    with torch.no_grad():
        img = drr(torch.tensor(poses.rotations, dtype=torch.float32),
                  torch.tensor(poses.translations, dtype=torch.float32),
                  parameterization="euler_angles", convention="ZXY")
    return img[:, 0].numpy(), subject.density.data[0].float()


def random_poses(n=5, seed=0):
    rng = np.random.default_rng(seed)
    rot = np.c_[rng.uniform(-np.pi, np.pi, n), rng.uniform(-0.4, 0.4, n), rng.uniform(-0.4, 0.4, n)]
    return PoseSet(rot, np.tile([0.0, 350.0, 0.0], (n, 1)) + rng.normal(0, 10, (n, 3)))


@pytest.mark.parametrize("interpolation, tolerance", [("exact", 1e-4), ("nearest", 0.15), ("bilinear", 0.15)])
def test_parity_with_diffdrr_siddon(interpolation, tolerance):
    hu, affine = oblique_tiny()
    poses = random_poses()
    ref, density = diffdrr_reference(hu, affine, poses)
    grid = OutputGrid.of_ct(hu.shape, affine)
    ours = JosephProjector(ConeBeamGeometry.from_poses(poses, DETECTOR, "AP"), grid, interpolation)(density).numpy()
    rays = ref > 0.05 * ref.max()
    rel = np.abs(ours - ref)[rays].mean() / ref[rays].mean()
    assert rel < tolerance, f"{interpolation}: mean relative difference {rel:.2e}"
    if interpolation == "exact":
        np.testing.assert_allclose(ours, ref, atol=1e-4 * ref.max())


def test_uniform_box_gives_chord_lengths():
    grid = box_grid(16, spacing=(10.0, 10.0, 10.0))  # a 160 mm cube
    geo = scan(8, detector=Detector(1020.0, 9, 9, 10.0, 10.0))
    ones = torch.ones(grid.shape)
    lengths = JosephProjector(geo, grid).ray_lengths_in_grid().numpy()
    # central rays pass through the isocentre at yaw θ: chord 160 / max(|cos θ|, |sin θ|)
    yaw = np.arange(8) * 2 * np.pi / 8
    np.testing.assert_allclose(lengths[:, 4, 4], 160.0 / np.maximum(np.abs(np.cos(yaw)), np.abs(np.sin(yaw))),
                               rtol=1e-5)
    assert JosephProjector(geo, grid)(ones).shape == (8, 9, 9)


@pytest.mark.parametrize("interpolation", ["exact", "bilinear"])
def test_autograd_is_the_adjoint(interpolation):
    grid = box_grid(12, spacing=(20.0, 20.0, 20.0))
    proj = JosephProjector(scan(5, detector=Detector(1020.0, 10, 12, 30.0, 30.0)), grid, interpolation)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(grid.shape, generator=gen, requires_grad=True)
    y = torch.rand((5, 10, 12), generator=gen)
    ax = proj(x)
    (ax * y).sum().backward()
    lhs = float((ax.detach().double() * y.double()).sum())
    rhs = float((x.detach().double() * x.grad.double()).sum())
    assert lhs == pytest.approx(rhs, rel=1e-5)
