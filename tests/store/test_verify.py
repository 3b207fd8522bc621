"""`drrkit verify` passes an honest store and fails each kind of damage, naming the CT."""

import shutil

import numpy as np
import pytest
import zarr

from drrkit.geometry.recipe import load_recipe
from drrkit.phantom import write_cohort
from drrkit.pipeline import RenderJob, render_corpus
from drrkit.store import open_corpus
from drrkit.render.masks import boxes_from_masks
from drrkit.store.mask_check import MASK_MISMATCH_TOLERANCE
from drrkit.store.verify import RERENDER_TOLERANCE, verify_store

ALL_VIEWS = 4  # 2 CTs x 2 views: every view re-rendered


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("v")
    write_cohort(d / "cts", n=2, shape=32, seed=3, nodule_prob=1.0)
    out = d / "s.zarr"
    report = render_corpus(RenderJob(recipe=load_recipe("chexgen").with_height(24).with_views(2), out=out,
                                     ct_dir=d / "cts", device="cpu"))
    assert report.exit_code == 0
    return out


def checks(path, **kw):
    result = verify_store(open_corpus(path), rerender=ALL_VIEWS, **kw)
    return result, {c.name: c for c in result.checks}


def damaged(store, tmp_path):
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    return copy, zarr.open_group(str(copy), mode="r+")


def test_an_honest_store_passes_every_check(store):
    result, by_name = checks(store, checksums=True)
    assert result.ok and [c.name for c in result.checks] == [
        "layout", "table", "complete", "rows", "poses", "images", "boxes", "sources", "rerender", "mask rerender"]
    assert all(c.ok for c in result.checks), [(c.name, c.detail) for c in result.checks]
    assert len(result.rerendered) == ALL_VIEWS
    assert max(r["rel_l1"] for r in result.rerendered) < RERENDER_TOLERANCE / 2
    assert max(r["mask_disagreement"] for r in result.rerendered) < MASK_MISMATCH_TOLERANCE / 2
    assert '"ok": true' in result.to_json()


def test_a_flipped_or_shifted_view_fails_the_rerender(store, tmp_path):
    copy, root = damaged(store, tmp_path)
    root["images"][1] = np.asarray(root["images"][1])[:, ::-1]  # the radiological convention lost
    root["images"][2] = np.roll(np.asarray(root["images"][2]), 1, axis=0)  # one pixel off
    result, by_name = checks(copy)
    assert not result.ok and by_name["rerender"].ok is False
    bad = sorted(r["row"] for r in result.rerendered if r["rel_l1"] > RERENDER_TOLERANCE)
    assert bad == [1, 2] and "view 1" in by_name["rerender"].detail
    assert by_name["images"].ok and by_name["poses"].ok  # the damage is only in the pixels


def test_metadata_damage_fails_its_own_check_naming_the_ct(store, tmp_path):
    copy, root = damaged(store, tmp_path)
    ids = list(root["cts/id"][:])
    image = np.asarray(root["images"][0])
    image[3, 4] = np.nan  # a pixel never written
    root["images"][0] = image
    rotation = np.asarray(root["rotation"][:])
    rotation[3, 0] += 0.01  # a pose that is not the recipe's
    root["rotation"][:] = rotation
    root["view_index"][0:2] = [1, 0]
    boxes = np.asarray(root["bboxes"][:])
    boxes[0, 0, 2] += 1
    root["bboxes"][:] = boxes
    root["cts/checksum"][1:2] = np.array([""], dtype=object)
    result, by_name = checks(copy)
    assert not result.ok
    assert by_name["images"].ok is False and ids[0] in by_name["images"].detail
    assert by_name["poses"].ok is False and ids[1] in by_name["poses"].detail
    assert by_name["rows"].ok is False and ids[0] in by_name["rows"].detail
    assert by_name["boxes"].ok is False and ids[0] in by_name["boxes"].detail
    assert by_name["table"].ok is False and "without a checksum" in by_name["table"].detail


def test_an_extrinsic_that_is_not_diffdrrs_fails_the_poses(store, tmp_path):
    copy, root = damaged(store, tmp_path)
    extrinsic = np.asarray(root["extrinsic"][:])
    extrinsic[2, 0, 3] += 1.0  # a millimetre off
    root["extrinsic"][:] = extrinsic
    _, by_name = checks(copy)
    assert by_name["poses"].ok is False and "diffdrr.pose.convert" in by_name["poses"].detail


def test_a_changed_or_missing_source_is_reported(store, tmp_path):
    copy, root = damaged(store, tmp_path)
    sources = list(root["cts/source"][:])
    moved = tmp_path / "other.nii.gz"
    shutil.copy(sources[1], moved)  # the second CT's data where the first is recorded
    root["cts/source"][:] = np.array([str(moved), str(tmp_path / "gone.nii.gz")], dtype=object)
    result, by_name = checks(copy, checksums=True)
    assert by_name["sources"].ok is False
    assert "checksum differs" in by_name["sources"].detail and "not found" in by_name["sources"].detail
    assert by_name["rerender"].ok is False and "not found" in by_name["rerender"].detail


def test_mirrored_masks_with_matching_boxes_fail_the_mask_rerender(store, tmp_path):
    """Boxes are checked against the stored masks, so masks mirrored left-right with their boxes
    recomputed pass that check; DiffDRR's own projection of the label map catches them."""
    copy, root = damaged(store, tmp_path)
    rows = slice(2, 4)  # the second CT
    mirrored = np.asarray(root["masks"][rows])[..., ::-1]
    root["masks"][rows] = mirrored
    root["bboxes"][rows] = boxes_from_masks(mirrored != 0)
    result, by_name = checks(copy)
    assert not result.ok and by_name["boxes"].ok and by_name["rerender"].ok
    assert by_name["mask rerender"].ok is False and "phantom_0001 view" in by_name["mask rerender"].detail
    assert [r["row"] for r in result.rerendered if r["mask_disagreement"] > MASK_MISMATCH_TOLERANCE] == [2, 3]


def test_a_missing_label_map_is_named_by_the_mask_rerender(store, tmp_path):
    copy, root = damaged(store, tmp_path)
    labels = [str(v) for v in root["cts/labels"][:]]
    root["cts/labels"][0] = labels[0] + ".gone"
    result, by_name = checks(copy)
    assert by_name["mask rerender"].ok is False and "label map" in by_name["mask rerender"].detail
    assert "not found" in by_name["mask rerender"].detail and by_name["rerender"].ok


def test_pending_cts_fail_the_completeness_check_only(store, tmp_path):
    """An interrupted render leaves CTs pending: the store is consistent but not whole."""
    copy, root = damaged(store, tmp_path)
    root["cts/status"][1] = "pending"
    result, by_name = checks(copy)
    assert not result.ok and by_name["complete"].ok is False
    assert "1 CT(s) pending, e.g. phantom_0001" in by_name["complete"].detail
    assert by_name["table"].ok and by_name["rows"].ok


def test_a_missing_array_fails_the_layout_and_stops(store, tmp_path):
    copy, _ = damaged(store, tmp_path)
    shutil.rmtree(copy / "extrinsic")
    result, by_name = checks(copy)
    assert not result.ok and list(by_name) == ["layout"] and "extrinsic is missing" in by_name["layout"].detail


def test_sampled_image_checks_and_no_rerender(store):
    result, by_name = checks(store)
    sampled = verify_store(open_corpus(store), image_cts=1, rerender=0)
    by = {c.name: c for c in sampled.checks}
    assert "1 of 2 done CTs" in by["images"].detail and by["rerender"].ok is None and sampled.ok


def test_rerender_in_patches_and_single_views_is_the_same_image(store):
    corpus = open_corpus(store)
    whole = corpus.rerender_with_diffdrr(slice(0, 2))
    pieces = corpus.rerender_with_diffdrr(slice(0, 2), views_per_call=1, patch_size=8)  # 9 ray chunks a view
    np.testing.assert_allclose(pieces, whole, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_verify_rerenders_on_cuda(store):
    result = verify_store(open_corpus(store), rerender=ALL_VIEWS, device="cuda")
    assert result.ok and max(r["rel_l1"] for r in result.rerendered) < RERENDER_TOLERANCE
