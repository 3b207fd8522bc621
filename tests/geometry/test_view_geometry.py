"""Every view's X-ray source faces the volume across it: the isocentre lies between source and
detector. A custom recipe that breaks this (orientation PA with the AP recipes' +y translation)
is refused before a store is made, instead of rendering line integrals of no radiograph."""

import numpy as np
import pytest

from drrkit.geometry.poses import isocentre_depth, views_off_axis
from drrkit.geometry.recipe import Recipe, load_recipe
from drrkit.phantom import write_cohort
from drrkit.pipeline import RenderJob, dry_run, render_corpus


def mini(orientation="AP", y=700.0, **poses):
    return Recipe.from_dict({
        "name": "mini", "volume": {"orientation": orientation},
        "detector": {"sdd": 1020, "height": 8, "width": 8, "delx": 4.0, "dely": 4.0},
        "poses": poses or {"sampling": "grid", "rotation": {"z": {"start": -90, "stop": 90, "num": 3}},
                           "translation": {"y": y}}})


@pytest.mark.parametrize("name", ["xwin", "xray2xray", "x2ct-clip", "chexgen", "random-6dof", "recon-full"])
def test_shipped_recipes_put_the_isocentre_between_source_and_detector(name):
    recipe = load_recipe(name)
    depth = isocentre_depth(recipe.sample_poses("ct0"), recipe.detector.sdd, recipe.volume.orientation)
    assert ((depth > 0.5) & (depth < 0.8)).all()  # 700 of 1020 mm for the fixed-distance recipes
    recipe.check_views(recipe.sample_poses("ct0"), "ct0")


def test_depth_is_the_isocentre_s_place_on_the_central_axis():
    poses = mini().sample_poses("x")
    np.testing.assert_allclose(isocentre_depth(poses, 1020, "AP"), 700 / 1020)
    assert views_off_axis(poses, 1020, "PA") == [0, 1, 2]  # the same translation, the source behind
    assert views_off_axis(poses, 600, "AP") == [0, 1, 2]  # a detector plane through the volume
    assert views_off_axis(mini("PA", y=-700).sample_poses("x"), 1020, "PA") == []


def test_a_source_facing_away_is_refused_before_a_store_is_made(tmp_path):
    cts = tmp_path / "cts"
    write_cohort(cts, n=1, shape=16, seed=1)
    job = RenderJob(recipe=mini("PA"), out=tmp_path / "s.zarr", ct_dir=cts, device="cpu")
    for run in (render_corpus, dry_run):
        with pytest.raises(ValueError, match=r"recipe 'mini', CT phantom_0000: in 3 of 3 views .*not between"):
            run(job)
    assert not (tmp_path / "s.zarr").exists()


def test_random_draws_that_stray_fail_only_their_ct():
    recipe = mini(sampling="random", n=64, seed=0, translation={"y": {"normal": [700, 400]}},
                  rotation={"z": {"uniform": [-90, 90]}})
    strays = [ct for ct in ("a", "b", "c", "d", "e", "f")
              if views_off_axis(recipe.sample_poses(ct), recipe.detector.sdd, "AP")]
    assert strays  # ~3 % of draws land beyond the detector or behind the source
    with pytest.raises(ValueError, match=f"CT {strays[0]}: in"):
        recipe.check_views(recipe.sample_poses(strays[0]), strays[0])
