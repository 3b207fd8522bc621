from pathlib import Path

import numpy as np
import pytest
import zarr

from drrkit.geometry.recipe import Recipe
from drrkit.store import CTEntry, StoreMismatch, create_or_open, open_corpus
from drrkit.store.schema import DONE, FAILED, PENDING

RECIPE = {"name": "t", "detector": {"sdd": 1000, "height": 6, "width": 5, "delx": 2.0, "dely": 2.0},
          "poses": {"sampling": "grid", "rotation": {"z": {"start": 0, "stop": 90, "num": 3}},
                    "translation": {"y": 600}}}
ENTRIES = [CTEntry("a", "/data/a.nii.gz", "nifti"), CTEntry("b", "/data/b", "dicom")]
INFO = {"shape": [4, 5, 6], "spacing": [1.0, 1.5, 2.0], "affine": np.eye(4).tolist(),
        "hu_min": -1000.0, "hu_max": 1500.0, "checksum": "abc"}


def make(path, recipe=None, entries=ENTRIES, **kw):
    return create_or_open(path, recipe or Recipe.from_dict(RECIPE), entries, **kw)


def test_round_trip(tmp_path):
    recipe = Recipe.from_dict(RECIPE)
    w = make(tmp_path / "s.zarr")
    poses = recipe.sample_poses("b")
    images = np.random.default_rng(0).random((3, 6, 5)).astype(np.float32)
    w.write_rows(1, images, poses)
    w.record_ct(1, INFO)
    w.mark_done(1)
    w.mark_failed(0, "unreadable", "/data/a.nii.gz: truncated")
    c = open_corpus(tmp_path / "s.zarr")
    assert len(c) == 6 and c.views_per_ct == 3 and c.n_cts == 2
    np.testing.assert_array_equal(np.asarray(c.images[3:6]), images)
    assert np.all(np.isnan(np.asarray(c.images[0:3])))  # never-written rows are NaN, not zeros
    np.testing.assert_allclose(c.poses(c.ct_rows(1)).rotations, poses.rotations)
    np.testing.assert_allclose(np.asarray(c.root["extrinsic"][3:6]), poses.extrinsics())
    np.testing.assert_array_equal(np.asarray(c.root["view_index"][3:6]), [0, 1, 2])
    table = c.ct_table()
    assert [r["status"] for r in table] == [FAILED, DONE]
    assert table[1]["shape"] == [4, 5, 6] and table[1]["spacing"] == [1.0, 1.5, 2.0]
    assert "truncated" in table[0]["error"] and table[0]["error_kind"] == "unreadable"
    assert c.detector.height == 6 and c.recipe == recipe
    assert c.attrs["pose_convention"]["convention"] == "ZXY"
    assert c.attrs["intensity"]["units"] == "mm"


def test_one_ct_is_one_shard(tmp_path):
    make(tmp_path / "s.zarr")
    images = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")["images"]
    assert images.shards == (3, 6, 5) and images.chunks == (1, 6, 5)


def test_reopen_resumes_and_mismatch_is_refused(tmp_path):
    w = make(tmp_path / "s.zarr")
    w.mark_done(0)
    again = make(tmp_path / "s.zarr")
    assert list(again.statuses()) == [DONE, PENDING]
    other = dict(RECIPE, poses=dict(RECIPE["poses"], translation={"y": 700}))
    with pytest.raises(StoreMismatch, match="recipe") as refused:
        make(tmp_path / "s.zarr", recipe=Recipe.from_dict(other))
    assert "recipe.poses.translation.y: 600 → 700" in str(refused.value)  # what changed, store → run
    with pytest.raises(StoreMismatch, match="set of CTs") as refused:
        make(tmp_path / "s.zarr", entries=ENTRIES[:1])
    assert "2 CTs in the store, 1 found now" in str(refused.value) and "missing here: b" in str(refused.value)
    fresh = make(tmp_path / "s.zarr", recipe=Recipe.from_dict(other), overwrite=True)
    assert list(fresh.statuses()) == [PENDING, PENDING]


def test_write_rows_checks_view_count(tmp_path):
    w = make(tmp_path / "s.zarr")
    with pytest.raises(Exception, match="expected 3 views"):
        w.write_rows(0, np.zeros((2, 6, 5), np.float32), Recipe.from_dict(RECIPE).sample_poses("a")[:2])


def test_images_are_stored_with_the_image_codec(tmp_path):
    from drrkit.store.writer import IMAGE_CODEC

    make(tmp_path / "s.zarr")
    images = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")["images"]
    (codec,) = images.compressors
    assert codec.cname == IMAGE_CODEC.cname and codec.shuffle == IMAGE_CODEC.shuffle


def test_a_store_with_relative_sources_resumes_from_its_directory_and_finds_its_cts(tmp_path, monkeypatch):
    from drrkit.store import source_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.nii.gz").write_bytes(b"x")
    typed = [CTEntry("a", "data/a.nii.gz", "nifti")]  # as stores made before absolute sources hold them
    make(tmp_path / "s.zarr", entries=typed).mark_done(0)
    again = make(tmp_path / "s.zarr", entries=[CTEntry("a", str(tmp_path / "data" / "a.nii.gz"), "nifti")])
    assert list(again.statuses()) == [DONE]  # the same file, spelled absolutely: resumes
    with pytest.raises(StoreMismatch, match="set of CTs"):
        make(tmp_path / "s.zarr", entries=[CTEntry("a", str(tmp_path / "other" / "a.nii.gz"), "nifti")])
    with pytest.raises(StoreMismatch, match="set of CTs"):
        make(tmp_path / "s.zarr", entries=[CTEntry("b", "data/a.nii.gz", "nifti")])
    assert source_path("data/a.nii.gz", tmp_path / "s.zarr") == Path("data/a.nii.gz")  # exists from here
    monkeypatch.chdir(tmp_path / "data")
    assert source_path("data/a.nii.gz", tmp_path / "s.zarr") == tmp_path / "data" / "a.nii.gz"  # beside the store
    assert source_path("/elsewhere/x.nii.gz", tmp_path / "s.zarr") == Path("/elsewhere/x.nii.gz")
