import numpy as np
import pytest
import yaml

from drrkit.config import ConfigError
from drrkit.geometry.recipe import Recipe, load_recipe


def base(**poses):
    spec = {"sampling": "grid", "rotation": {"z": {"start": -90, "stop": 90, "step": 3}},
            "translation": {"y": 700}}
    spec.update(poses)
    return {"name": "t", "detector": {"sdd": 1020, "height": 512, "width": 512, "delx": 1.0, "dely": 1.0},
            "poses": spec}


def test_xwin_recipe_is_the_release_geometry():
    r = load_recipe("xwin")
    assert r.views_per_ct() == 61
    d = r.detector
    assert (d.sdd, d.height, d.width, d.delx, d.dely) == (1020.0, 512, 512, 1.0, 1.0)
    assert r.volume.orientation == "AP"
    poses = r.sample_poses("any")
    np.testing.assert_allclose(np.degrees(poses.rotations[:, 0]), np.arange(-90, 91, 3))
    assert np.all(poses.rotations[:, 1:] == 0)
    np.testing.assert_allclose(poses.translations, np.tile([0, 700, 0], (61, 1)))


def test_recipe_by_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(base()))
    assert load_recipe(path).views_per_ct() == 61


def test_unknown_keys_and_bad_values_are_errors():
    data = base()
    data["detector"]["sdd_mm"] = 3
    with pytest.raises(ConfigError, match="unknown key"):
        Recipe.from_dict(data)
    with pytest.raises(ConfigError, match="multiple of step"):
        Recipe.from_dict(base(rotation={"z": {"start": 0, "stop": 10, "step": 3}}))
    with pytest.raises(ConfigError, match="sampling: random"):
        Recipe.from_dict(base(rotation={"z": {"uniform": [-10, 10]}}))
    with pytest.raises(ConfigError, match="no recipe"):
        load_recipe("no-such-recipe")


def test_height_keeps_field_of_view_unless_delx_given():
    r = load_recipe("xwin")
    small = r.with_height(64)
    assert small.detector.field_of_view_mm == pytest.approx(r.detector.field_of_view_mm)
    assert small.detector.delx == pytest.approx(8.0)
    fixed = r.with_height(64, delx=2.0)
    assert fixed.detector.delx == 2.0 and fixed.detector.width == 64


def test_views_resamples_the_ranged_component():
    r = load_recipe("xwin").with_views(5)
    np.testing.assert_allclose(np.degrees(r.sample_poses("x").rotations[:, 0]), [-90, -45, 0, 45, 90])


def test_random_sampling_is_seeded_per_ct():
    r = Recipe.from_dict(base(sampling="random", n=10, seed=7,
                              rotation={"z": {"uniform": [-30, 30]}, "x": {"normal": [0, 5]}},
                              translation={"y": {"normal": [700, 10]}}))
    a1, a2, b = r.sample_poses("ct_a"), r.sample_poses("ct_a"), r.sample_poses("ct_b")
    np.testing.assert_array_equal(a1.rotations, a2.rotations)
    assert not np.allclose(a1.rotations, b.rotations)
    assert np.all(np.abs(np.degrees(a1.rotations[:, 0])) <= 30)
    assert len(a1) == r.views_per_ct() == 10
    assert len(r.with_views(3).sample_poses("ct_a")) == 3
