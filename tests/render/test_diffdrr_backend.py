import numpy as np
import pytest
import torch
from diffdrr.data import read
from diffdrr.drr import DRR

from drrkit.geometry.recipe import Recipe
from drrkit.render import make_renderer, render_all, resolve_device
from drrkit.render.diffdrr_backend import DiffDRRBackend
from tests.conftest import write_nifti

RECIPE = {"name": "t", "detector": {"sdd": 1020, "height": 24, "width": 20, "delx": 4.0, "dely": 4.0},
          "poses": {"sampling": "grid", "rotation": {"z": {"start": -90, "stop": 90, "num": 5}},
                    "translation": {"y": 700}}}


def test_matches_plain_diffdrr_reading_the_file(tiny, tmp_path):
    recipe = Recipe.from_dict(RECIPE)
    poses = recipe.sample_poses(tiny.id)
    ours = render_all(make_renderer(recipe, "diffdrr", "cpu"), tiny, poses)
    drr = DRR(read(write_nifti(tiny, tmp_path / "t.nii.gz"), orientation="AP"), **recipe.detector.drr_kwargs())
    with torch.no_grad():
        ref = drr(torch.tensor(poses.rotations, dtype=torch.float32), torch.tensor(poses.translations, dtype=torch.float32),
                  parameterization="euler_angles", convention="ZXY")[:, 0].numpy()
    assert ours.shape == (5, 24, 20) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-4)
    assert ours.max() > 0


def test_batch_size_does_not_change_images(tiny):
    recipe = Recipe.from_dict(RECIPE)
    poses = recipe.sample_poses(tiny.id)
    one = render_all(DiffDRRBackend(recipe.detector, recipe.volume, batch_size=1), tiny, poses)
    many = render_all(DiffDRRBackend(recipe.detector, recipe.volume, batch_size=4), tiny, poses)
    np.testing.assert_allclose(one, many, rtol=1e-5, atol=1e-5)


def test_auto_batch_is_bounded_by_memory(tiny):
    backend = DiffDRRBackend(Recipe.from_dict(RECIPE).detector, Recipe.from_dict(RECIPE).volume)
    assert backend.bytes_per_view(tiny) == 24 * 20 * (24 + 20 + 16 + 3) * 48


def test_device_resolution_never_falls_back_silently():
    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto") == "cpu"
        with pytest.raises(RuntimeError, match="no CUDA"):
            resolve_device("cuda")
    with pytest.raises(ValueError):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="unknown backend"):
        make_renderer(Recipe.from_dict(RECIPE), "fastest", "cpu")


def test_frontal_image_is_displayed_radiologically():
    """xwin geometry, yaw 0: patient's left (RAS x < 0) on the image right, superior at the top."""
    from drrkit.ct.volume import CTVolume
    from drrkit.geometry.poses import PoseSet

    shape = (40, 40, 40)
    hu = np.full(shape, -1000.0, np.float32)
    hu[2:38, 2:38, 2:38] = 0.0
    hu[5:12, 16:24, 16:24] = 1500.0  # x = 2i - 39 < 0: patient's left, mid height
    hu[18:22, 18:22, 31:38] = 1500.0  # z > 0: superior, midline
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -39.0
    recipe = Recipe.from_dict({**RECIPE, "detector": {"sdd": 1020, "height": 32, "width": 32, "delx": 4.0, "dely": 4.0}})
    ct = CTVolume(hu, affine, "lr", "<memory>")
    img = render_all(make_renderer(recipe, "diffdrr", "cpu"), ct, PoseSet(np.zeros((1, 3)), np.array([[0.0, 700.0, 0.0]])))[0]
    excess = img - np.median(img)
    assert np.argmax(excess[12:20].sum(axis=0)) > 16  # the left-sided block: right half of the image
    assert np.argmax(excess[:, 14:18].sum(axis=1)) < 16  # the superior block: upper half


def test_views_larger_than_memory_render_in_patches_with_the_same_result(tiny, monkeypatch):
    import drrkit.render.diffdrr_backend as mod

    recipe = Recipe.from_dict(RECIPE)
    poses = recipe.sample_poses(tiny.id)
    whole = render_all(DiffDRRBackend(recipe.detector, recipe.volume), tiny, poses)
    backend = DiffDRRBackend(recipe.detector, recipe.volume)
    monkeypatch.setattr(mod, "free_bytes", lambda device: backend.bytes_per_view(tiny) // 3)  # < one view
    batch, patch = backend.plan_batches(tiny)
    assert batch == 1 and patch is not None and patch * patch < 24 * 20
    np.testing.assert_allclose(render_all(backend, tiny, poses), whole, rtol=1e-5, atol=1e-5)
