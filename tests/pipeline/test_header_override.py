"""Manifest header corrections (rescale_slope, rescale_intercept, spacing) for NIfTI files whose
header does not describe their data, as CT-RATE's do: the corrected file renders exactly as a
correct one, the store records how it was read, verify and re-rendering use it, bad values fail
that CT alone, and a resume with other values is refused."""

import csv

import nibabel as nib
import numpy as np
import pytest

from drrkit.ct import CTReadError, read_nifti
from drrkit.ct.overrides import HeaderOverride, OverrideError, parse_override
from drrkit.geometry.recipe import load_recipe
from drrkit.phantom import write_cohort
from drrkit.pipeline import RenderJob, render_corpus
from drrkit.store import StoreMismatch, open_corpus
from drrkit.store.verify import verify_store

RECIPE = load_recipe("xwin").with_height(24).with_views(3)


@pytest.fixture(scope="module")
def cts(tmp_path_factory):
    """A phantom, and its CT-RATE-like twin: stored values HU + 1024 with no scaling in the
    header, and a header spacing of 1 mm that is wrong."""
    d = tmp_path_factory.mktemp("ov")
    write_cohort(d / "ph", n=1, shape=32, seed=2, nodule_prob=1.0)
    good = d / "ph" / "phantom_0000.nii.gz"
    img = nib.load(str(good))
    hu = np.asarray(img.dataobj).astype(np.int16)
    spacing = [float(v) for v in img.header.get_zooms()[:3]]
    wrong = img.affine.copy()
    wrong[:3, :3] /= np.asarray(spacing)  # 1 mm voxels
    raw = nib.Nifti1Image((hu + 1024).astype(np.int16), wrong)
    raw.header.set_slope_inter(np.nan, np.nan)  # unset, as in CT-RATE's files
    nib.save(raw, str(d / "raw.nii.gz"))
    return d, good, d / "raw.nii.gz", spacing


def manifest(d, rows, name="m.csv"):
    path = d / name
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "id", "rescale_slope", "rescale_intercept", "spacing"])
        w.writeheader()
        w.writerows(rows)
    return path


def test_parse_override_reads_numbers_and_names_bad_columns():
    assert parse_override({"path": "a"}) is None
    o = parse_override({"rescale_slope": "1", "rescale_intercept": "-1024", "spacing": "[0.75, 0.75, 1.5]"})
    assert o == HeaderOverride(1.0, -1024.0, (0.75, 0.75, 1.5))
    assert parse_override({"spacing": "0.7 0.7 2"}).rescales is False
    for row, message in [({"rescale_slope": "1"}, "rescale_intercept is empty"),
                         ({"rescale_slope": "x", "rescale_intercept": "0"}, "not a number"),
                         ({"rescale_slope": "0", "rescale_intercept": "0"}, "is 0"),
                         ({"spacing": "1 2"}, "needs 3 values"), ({"spacing": "1 -2 3"}, "positive"),
                         ({"spacing": "1 nan 3"}, "not finite")]:
        with pytest.raises(OverrideError, match=message):
            parse_override(row)


def test_a_corrected_file_reads_as_the_correct_one(cts):
    _, good, raw, spacing = cts
    ref = read_nifti(good)
    fixed = read_nifti(raw, HeaderOverride(1.0, -1024.0, tuple(spacing)))
    np.testing.assert_array_equal(fixed.hu, ref.hu)
    np.testing.assert_allclose(fixed.affine, ref.affine, rtol=0, atol=1e-12)
    assert fixed.meta["header_spacing"] == [1.0, 1.0, 1.0] and fixed.meta["scl_inter"] == -1024.0
    assert read_nifti(raw).hu.min() > -100  # uncorrected: stored values (air near 0), not HU
    with pytest.raises(CTReadError, match="scales its own voxels"):
        read_nifti(_self_scaled(raw), HeaderOverride(1.0, -1024.0))


def _self_scaled(raw):
    img = nib.load(str(raw))
    out = nib.Nifti1Image(np.asarray(img.dataobj), img.affine)
    out.header.set_slope_inter(1.0, -1024.0)
    path = raw.parent / "self_scaled.nii"
    nib.save(out, str(path))
    return path


def test_manifest_corrections_render_verify_and_refuse_a_changed_resume(cts, tmp_path):
    d, good, raw, spacing = cts
    fix = {"rescale_slope": "1", "rescale_intercept": "-1024", "spacing": " ".join(map(str, spacing))}
    rows = [{"path": str(good), "id": "good"}, {"path": str(raw), "id": "fixed", **fix},
            {"path": str(raw), "id": "badrow", "rescale_slope": "1"}]
    out = tmp_path / "s.zarr"
    report = render_corpus(RenderJob(recipe=RECIPE, out=out, manifest=manifest(tmp_path, rows), device="cpu"))
    assert report.exit_code == 3
    (bad,) = report.failed
    assert bad.ct_id == "badrow" and bad.error_kind == "bad_manifest_row" and "line 4" in bad.error
    corpus = open_corpus(out)
    images = np.asarray(corpus.images[:6])
    np.testing.assert_allclose(images[3:6], images[0:3], rtol=1e-5, atol=1e-6)  # as the correct file
    table = corpus.ct_table()
    assert table[1]["spacing"] == pytest.approx(spacing) and table[1]["hu_min"] == table[0]["hu_min"]
    assert corpus.header_override(1) == parse_override(fix) and corpus.header_override(0) is None
    result = verify_store(corpus, rerender=6, checksums=True)  # DiffDRR gets the corrected volume
    assert result.ok, [(c.name, c.detail) for c in result.checks]
    assert max(r["rel_l1"] for r in result.rerendered) < 5e-3
    from drrkit.reconstruct.inputs import load_projections, load_source_ct

    truth = load_source_ct(load_projections(out, "fixed"))  # checksum-checked: read as it was rendered
    assert truth.meta["header_override"]["rescale_intercept"] == -1024.0
    rows[1]["rescale_intercept"] = "-1000"
    with pytest.raises(StoreMismatch, match=r"rescale_intercept of fixed: '-1024' → '-1000'"):
        render_corpus(RenderJob(recipe=RECIPE, out=out, manifest=manifest(tmp_path, rows, "m2.csv"), device="cpu"))


def test_a_dicom_series_with_corrections_fails_with_the_reason(tmp_path):
    from drrkit.ct import CTSource, load_ct

    source = CTSource("s", str(tmp_path), "dicom", (), None, HeaderOverride(spacing=(1.0, 1.0, 1.0)))
    with pytest.raises(CTReadError, match="apply to NIfTI files"):
        load_ct(source)
