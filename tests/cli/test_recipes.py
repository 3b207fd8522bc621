"""Every shipped recipe renders the bundled CT and phantoms; display conventions of the views."""

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.app import app
from drrkit.ct.volume import CTVolume
from drrkit.geometry.recipe import available_recipes, load_recipe
from drrkit.render import make_renderer, render_all
from drrkit.store import open_corpus

runner = CliRunner()
SHIPPED = ["chexgen", "random-6dof", "x2ct-clip", "xray2xray", "xwin"]


def test_all_recipes_are_shipped_and_valid():
    assert set(SHIPPED) <= set(available_recipes())
    for name in available_recipes():
        assert load_recipe(name).views_per_ct() >= 1


@pytest.mark.parametrize("name", SHIPPED)
def test_recipe_renders_bundled_ct_and_phantoms(name, tmp_path):
    cts = tmp_path / "cts"
    assert runner.invoke(app, ["phantom", "--out", str(cts), "--n", "1", "--shape", "24"]).exit_code == 0
    for source in ([], ["--ct-dir", str(cts)]):
        out = tmp_path / f"{name}{len(source)}.zarr"
        result = runner.invoke(app, ["render", "--poses", name, "--height", "16", "--views", "2", "--device", "cpu",
                                     "--backend", "diffdrr", "--out", str(out), *source])
        assert result.exit_code == 0, result.output
        corpus = open_corpus(out)
        images = np.asarray(corpus.images[:])
        assert images.shape[0] == 2 and np.all(np.isfinite(images)) and images.max() > 0


def test_x2ct_clip_pa_view_is_displayed_radiologically():
    """PA (source posterior) with reverse_x_axis false: the patient's left on the image right."""
    hu = np.full((40, 40, 40), -1000.0, np.float32)
    hu[2:38, 2:38, 2:38] = 0.0
    hu[5:12, 16:24, 16:24] = 1500.0  # RAS x < 0: patient's left
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -39.0
    recipe = load_recipe("x2ct-clip").with_height(32, delx=4.0)
    ct = CTVolume(hu, affine, "lr", "<memory>")
    pa = render_all(make_renderer(recipe, "diffdrr", "cpu"), ct, recipe.sample_poses("lr")[0:1])[0]
    np.testing.assert_allclose(recipe.sample_poses("lr").source_positions()[0], [0, -700, 0], atol=1e-6)
    excess = pa - np.median(pa)
    assert np.argmax(excess[12:20].sum(axis=0)) > 16
