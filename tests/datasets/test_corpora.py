"""Sibling-system corpora: ChexGen masks/boxes, Xray2Xray transitions, X2CT-CLIP triplets, export."""

import csv
import json

import numpy as np
import pydicom
import pytest
from PIL import Image

from drrkit.datasets import MaskedViewDataset, TransitionDataset, TripletDataset
from drrkit.geometry.recipe import load_recipe
from drrkit.phantom import write_cohort
from drrkit.pipeline import RenderJob, render_corpus
from drrkit.store import open_corpus
from drrkit.store.export import export_store


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    d = tmp_path_factory.mktemp("ph")
    write_cohort(d, n=2, shape=40, seed=5, nodule_prob=1.0)
    return d


def render(recipe, out, **kw):
    report = render_corpus(RenderJob(recipe=recipe, out=out, device="cpu", backend="diffdrr", **kw))
    return report, open_corpus(out)


@pytest.fixture(scope="module")
def chexgen_store(phantoms, tmp_path_factory):
    out = tmp_path_factory.mktemp("cg") / "cg.zarr"
    report, corpus = render(load_recipe("chexgen").with_height(48).with_views(2), out, ct_dir=phantoms)
    assert report.exit_code == 0, [r.error for r in report.failed]
    return corpus


def test_chexgen_masks_lie_inside_their_boxes_and_lungs_are_visible(chexgen_store):
    c = chexgen_store
    assert c.masks.shape == (4, 8, 48, 48) and c.bboxes.shape == (4, 8, 4)
    channels = c.mask_channels
    masks, boxes, images = np.asarray(c.masks[:]), np.asarray(c.bboxes[:]), np.asarray(c.images[:])
    for v in range(4):
        for k, name in enumerate(channels):
            m = masks[v, k].astype(bool)
            if not m.any():
                assert np.all(np.isnan(boxes[v, k])), name
                continue
            x0, y0, x1, y1 = boxes[v, k].astype(int)
            assert m[:, :x0].sum() == m[:, x1:].sum() == m[:y0].sum() == m[y1:].sum() == 0  # inside
            assert m[:, x0].any() and m[:, x1 - 1].any() and m[y0].any() and m[y1 - 1].any()  # tight
        lungs = masks[v, channels.index("lungs")].astype(bool)
        spine = masks[v, channels.index("spine")].astype(bool)
        lung_only = lungs & ~spine & ~masks[v, channels.index("heart")].astype(bool)
        assert lung_only.sum() > 50
        assert images[v][lung_only].mean() < images[v][spine].mean()  # lungs darker than the spine
    assert masks[:, channels.index("nodule")].any()  # every phantom here has a nodule
    assert not masks[:, channels.index("aorta")].any()  # phantoms have no aorta: empty, not invented
    matched = c.root["cts/mask_structures"][0]
    assert '"lungs": ["left_lung", "right_lung"]' in str(matched)


def test_masked_view_dataset(chexgen_store):
    ds = MaskedViewDataset(chexgen_store.path)
    item = ds[1]
    assert len(ds) == 4 and item["image"].shape == (1, 48, 48) and item["masks"].shape == (8, 48, 48)
    assert item["channels"][0] == "lungs"


def test_missing_label_map_fails_that_ct_with_a_reason(phantoms, tmp_path):
    d = tmp_path / "cts"
    d.mkdir()
    (d / "lone.nii.gz").write_bytes((phantoms / "phantom_0000.nii.gz").read_bytes())
    report, corpus = render(load_recipe("chexgen").with_height(16).with_views(1), tmp_path / "x.zarr", ct_dir=d)
    assert report.exit_code == 3
    row = corpus.ct_table()[0]
    assert row["error_kind"] == "labels" and "no label map" in row["error"]


def test_xray2xray_transitions_wrap_the_full_circle(phantoms, tmp_path):
    recipe = load_recipe("xray2xray").with_height(16)
    _, corpus = render(recipe, tmp_path / "s.zarr", ct_dir=phantoms)
    ds = TransitionDataset(corpus.path)
    assert len(ds) == 2 * 36  # 36 steps per CT including 350° → 0°
    item = ds[35]
    assert item["rows"] == (35, 0)
    np.testing.assert_allclose(item["action"][:3].numpy(), [np.radians(10), 0, 0], atol=1e-6)
    assert item["view_t"].shape == (1, 16, 16)


def test_x2ct_clip_triplets_carry_manifest_reports(phantoms, tmp_path):
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "id", "report", "label_nodule"])
        w.writerow([phantoms / "phantom_0000.nii.gz", "p0", "Right lung nodule.", "1"])
        w.writerow([phantoms / "phantom_0001.nii.gz", "p1", "Nodule, left lower lobe.", "1"])
    report, corpus = render(load_recipe("x2ct-clip").with_height(24), tmp_path / "t.zarr", manifest=manifest)
    assert report.exit_code == 0 and corpus.views_per_ct == 2
    ds = TripletDataset(corpus.path)
    item = ds[1]
    assert item["ct_id"] == "p1" and item["views"].shape == (2, 24, 24)
    assert item["report"] == "Nodule, left lower lobe." and item["fields"] == {"label_nodule": "1"}
    assert item["ct_path"].endswith("phantom_0001.nii.gz")
    export_store(corpus, tmp_path / "png", "png")  # image files with their CT's report beside them
    rows = list(csv.DictReader((tmp_path / "png" / "index.csv").open()))
    assert len(rows) == 4 and {r["ct_report"] for r in rows if r["ct_id"] == "p1"} == {"Nodule, left lower lobe."}
    assert {r["ct_label_nodule"] for r in rows} == {"1"}


def test_export_png_and_dicom_round_trip(chexgen_store, tmp_path):
    c = chexgen_store
    raw = c.image(2)
    done = export_store(c, tmp_path / "png", "png")
    assert done.images == 4
    rows = list(csv.DictReader((tmp_path / "png" / "index.csv").open()))
    row = next(r for r in rows if int(r["row"]) == 2)
    png = np.asarray(Image.open(tmp_path / "png" / row["file"]), dtype=np.float64)
    back = png * float(row["rescale_slope"]) + float(row["rescale_intercept"])
    assert np.abs(back - raw).max() <= float(row["rescale_slope"])
    export_store(c, tmp_path / "dcm", "dicom", ["phantom_0001"])
    ds = pydicom.dcmread(next((tmp_path / "dcm").glob("phantom_0001_view0000.dcm")))
    assert ds.Modality == "DX" and ds.Rows == 48 and float(ds.DistanceSourceToDetector) == 1020.0
    recovered = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_allclose(recovered, c.image(2), atol=float(ds.RescaleSlope))
    block = ds.private_block(0x0011, "drrkit")
    np.testing.assert_allclose(block[0x02].value, c.poses([2]).translations[0])
    with pytest.raises(ValueError, match="unknown CT"):
        export_store(c, tmp_path / "x", "png", ["nope"])


def test_export_writes_masks_and_coco_annotations_that_match_the_store(chexgen_store, tmp_path):
    from drrkit.store.mask_export import rle_decode

    c = chexgen_store
    done = export_store(c, tmp_path / "png", "png")
    coco = json.loads(done.annotations.read_text())
    assert [cat["name"] for cat in coco["categories"]] == c.mask_channels
    images = {im["id"]: im for im in coco["images"]}
    rows = {r["file"]: int(r["row"]) for r in csv.DictReader((tmp_path / "png" / "index.csv").open())}
    assert sorted(im["file_name"] for im in images.values()) == sorted(rows)
    expected = sum(int(np.asarray(c.masks[r][k]).any()) for r in rows.values() for k in range(len(c.mask_channels)))
    assert len(coco["annotations"]) == done.mask_files == expected > 0
    for ann in coco["annotations"]:
        image, k = images[ann["image_id"]], ann["category_id"] - 1
        row = rows[image["file_name"]]
        stored = np.asarray(c.masks[row][k]) != 0
        np.testing.assert_array_equal(rle_decode(ann["segmentation"]["counts"], 48, 48), stored)
        x0, y0, x1, y1 = np.asarray(c.bboxes[row][k])
        assert ann["bbox"] == [x0, y0, x1 - x0, y1 - y0] and ann["area"] == int(stored.sum())
        name = f'{image["file_name"][:-4]}_{c.mask_channels[k]}.png'
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "png" / "masks" / name)) == 255, stored)
    assert len(list((tmp_path / "png" / "masks").glob("*.png"))) == done.mask_files
    plain = export_store(c, tmp_path / "plain", "png", masks=False)
    assert plain.annotations is None and not (tmp_path / "plain" / "masks").exists()


def test_export_masks_of_a_store_without_masks_is_refused(phantoms, tmp_path):
    _, corpus = render(load_recipe("xwin").with_height(16).with_views(2), tmp_path / "s.zarr", ct_dir=phantoms)
    assert export_store(corpus, tmp_path / "a", "png").annotations is None
    with pytest.raises(ValueError, match="has no masks"):
        export_store(corpus, tmp_path / "b", "png", masks=True)
