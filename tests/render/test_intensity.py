"""Intensity options against their analytic definitions: a water slab of known thickness."""

import numpy as np
import pytest

from drrkit.ct.volume import CTVolume
from drrkit.geometry.recipe import IntensitySpec, Recipe
from drrkit.render import make_renderer, render_all
from drrkit.render.intensity import finish, hu_to_mu, integrated_field

L_MM = 40.0  # slab thickness along the AP ray direction


def water_slab() -> CTVolume:
    hu = np.full((20, 40, 20), -1000.0, np.float32)
    hu[:, 10:30, :] = 0.0  # 20 voxels × 2 mm = 40 mm of water along y, spanning x and z
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-19.0, -39.0, -19.0]
    return CTVolume(hu, affine, "slab", "<memory>")


def recipe(**intensity) -> Recipe:
    return Recipe.from_dict({"name": "slab", "intensity": {"kind": "mu", **intensity},
                             "detector": {"sdd": 1020, "height": 16, "width": 16, "delx": 2.0, "dely": 2.0},
                             "poses": {"sampling": "grid", "translation": {"y": 700}}})


def line_integrals(r: Recipe) -> np.ndarray:
    ct = water_slab()
    poses = r.sample_poses(ct.id)
    return render_all(make_renderer(r, "diffdrr", "cpu"), ct, poses, integrated_field(r.intensity, ct.hu))


def test_hu_to_mu_model():
    spec = IntensitySpec(kind="mu")
    mu = hu_to_mu(np.array([-1000.0, -500.0, 0.0, 500.0, 1000.0, -1200.0]), spec.mu_water, spec.mu_bone, spec.hu_bone)
    np.testing.assert_allclose(mu, [0.0, spec.mu_water / 2, spec.mu_water, (spec.mu_water + spec.mu_bone) / 2,
                                    spec.mu_bone, 0.0], rtol=1e-6)


def test_mu_line_integral_of_a_water_slab():
    r = recipe()
    img = line_integrals(r)[0]
    np.testing.assert_allclose(img, r.intensity.mu_water * L_MM, rtol=2e-3)


def test_beer_lambert_and_log_without_noise():
    mu_l = line_integrals(recipe())
    bl = finish(IntensitySpec(kind="beer_lambert", i0=2.0), mu_l, "slab")
    np.testing.assert_allclose(bl, 2.0 * np.exp(-0.0206 * L_MM), rtol=2e-3)
    log = finish(IntensitySpec(kind="log"), mu_l, "slab")
    np.testing.assert_allclose(log, 0.0206 * L_MM, rtol=2e-3)


def test_poisson_noise_has_the_right_statistics_and_is_seeded():
    mu_l = np.full((4, 32, 32), 0.0206 * L_MM, np.float32)
    spec = IntensitySpec(kind="beer_lambert", photons=1e4, seed=3)
    a, b = finish(spec, mu_l, "ct_a"), finish(spec, mu_l, "ct_a")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, finish(spec, mu_l, "ct_b"))
    p = np.exp(-0.0206 * L_MM)
    assert abs(a.mean() - p) < 4 * np.sqrt(p / 1e4) / np.sqrt(a.size)
    assert a.var() == pytest.approx(p / 1e4, rel=0.15)
    log = finish(IntensitySpec(kind="log", photons=1e4), mu_l, "ct_a")
    assert np.all(np.isfinite(log)) and log.mean() == pytest.approx(0.0206 * L_MM, rel=0.01)


def test_photons_only_with_transmission_kinds():
    with pytest.raises(Exception, match="photons"):
        recipe(photons=1000)
