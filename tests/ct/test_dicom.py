"""read_dicom_series on pydicom's bundled test series and on synthetic oblique series.

pydicom 3.0.2 test data used (test_files/dicomdirtests/):
  98892001/CT5N   5 CT slices 16x16, z 8.7625 → -1.2375 in file-name order (stored in reverse), 2.5 mm
  77654033/CT2    4 CT slices, z -99.48, 103.02, 104.27, 105.52: a 202.5 mm gap
  98892001/CT2N   2 CT slices (one axial, one sagittal): too few slices
  98892003/MR700  7 MR slices; 77654033/CR1: one CR image
  TINY_ALPHA/PT000000/ST000000/SE000000: 50 header-only CT files (no geometry, no pixels)
and single bad files in test_files/: no_meta.dcm, ExplVR_LitEndNoMeta.dcm (no DICM preamble),
meta_missing_tsyntax.dcm (no Modality), rtplan_truncated.dcm (RTPLAN), CT_small.dcm (one slice).
"""

from __future__ import annotations

import random
import shutil

import numpy as np
import pydicom
import pytest

from drrkit.ct import (
    CTReadError,
    MixedOrientation,
    NonFiniteValues,
    Not3D,
    NotCT,
    UnevenSpacing,
    UnreadableFile,
    read_dicom_series,
)
from drrkit.ct.errors import MixedRescale

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _files(folder):
    return sorted(p for p in folder.iterdir() if p.is_file())


# ---------------------------------------------------------------- pydicom's real CT series


def test_real_ct_series_reads_sorted_with_hu(dicomdir_tests):
    folder = dicomdir_tests / "98892001" / "CT5N"
    vol = read_dicom_series(_files(folder))
    assert vol.shape == (16, 16, 5) and vol.hu.dtype == np.float32
    assert vol.source == str(folder)
    assert vol.id.startswith("CT5N_") and len(vol.id) == len("CT5N_") + 8
    # Sorted by z (normal (0,0,1)): ascending z is descending file name here.
    datasets = sorted((pydicom.dcmread(p) for p in _files(folder)), key=lambda d: float(d.ImagePositionPatient[2]))
    assert [float(d.ImagePositionPatient[2]) for d in datasets][0] == pytest.approx(-1.2375)
    for k, ds in enumerate(datasets):
        expected = float(ds.RescaleSlope) * ds.pixel_array.astype(np.float64) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(vol.hu[:, :, k], expected.T.astype(np.float32))
    expected_affine = LPS_TO_RAS @ np.array(
        [[0.488281, 0, 0, -72.199997], [0, 0.488281, 0, -143.0], [0, 0, 2.5, -1.2375], [0, 0, 0, 1]]
    )
    np.testing.assert_allclose(vol.affine, expected_affine, atol=1e-6)
    world_z = [(vol.affine @ [0, 0, k, 1])[2] for k in range(5)]
    assert np.all(np.diff(world_z) > 0)
    assert vol.meta["series_uid"] == str(datasets[0].SeriesInstanceUID)


def test_real_reverse_stored_series_matches_any_file_order(dicomdir_tests):
    files = _files(dicomdir_tests / "98892001" / "CT5N")
    instance_z = [(int(pydicom.dcmread(p).InstanceNumber), float(pydicom.dcmread(p).ImagePositionPatient[2]))
                  for p in files]
    assert [z for _, z in sorted(instance_z)] == sorted((z for _, z in instance_z), reverse=True)
    ref = read_dicom_series(files)
    shuffled = files[:]
    random.Random(3).shuffle(shuffled)
    for order in (files[::-1], shuffled):
        vol = read_dicom_series(order)
        assert vol.checksum() == ref.checksum() and vol.id == ref.id


def test_real_series_with_gap_is_uneven(dicomdir_tests):
    folder = dicomdir_tests / "77654033" / "CT2"
    with pytest.raises(UnevenSpacing, match="202.5") as exc:
        read_dicom_series(_files(folder))
    assert exc.value.path == str(folder) and exc.value.kind == "uneven_spacing"


def test_real_mr_series_is_not_ct(dicomdir_tests):
    with pytest.raises(NotCT, match="'MR'") as exc:
        read_dicom_series(_files(dicomdir_tests / "98892003" / "MR700"))
    assert "MR700" in exc.value.path


def test_real_cr_image_is_not_ct(dicomdir_tests):
    with pytest.raises(NotCT, match="'CR'"):
        read_dicom_series(_files(dicomdir_tests / "77654033" / "CR1"))


def test_real_two_slice_series_is_not3d(dicomdir_tests):
    with pytest.raises(Not3D, match="2 slice"):
        read_dicom_series(_files(dicomdir_tests / "98892001" / "CT2N"))


def test_header_only_ct_files_are_unreadable(dicomdir_tests):
    folder = dicomdir_tests / "TINY_ALPHA" / "PT000000" / "ST000000" / "SE000000"
    with pytest.raises(UnreadableFile, match="lacks Rows"):
        read_dicom_series(_files(folder))


@pytest.mark.parametrize(
    "name, error, text",
    [
        ("no_meta.dcm", UnreadableFile, "not a readable DICOM"),
        ("ExplVR_LitEndNoMeta.dcm", UnreadableFile, "not a readable DICOM"),
        ("meta_missing_tsyntax.dcm", UnreadableFile, "no Modality"),
        ("rtplan_truncated.dcm", NotCT, "RTPLAN"),
        ("CT_small.dcm", Not3D, "1 slice"),
    ],
)
def test_bad_pydicom_files_give_typed_errors(pydicom_test_files, name, error, text):
    path = pydicom_test_files / name
    with pytest.raises(error, match=text) as exc:
        read_dicom_series([path])
    assert type(exc.value) is error
    if error is not Not3D:
        assert exc.value.path == str(path)


def test_text_file_is_unreadable(dicomdir_tests):
    with pytest.raises(UnreadableFile, match="README.txt"):
        read_dicom_series([dicomdir_tests / "README.txt"])


def test_files_from_two_series_need_series_uid(dicomdir_tests):
    ct5n = _files(dicomdir_tests / "98892001" / "CT5N")
    ct2 = _files(dicomdir_tests / "77654033" / "CT2")
    with pytest.raises(CTReadError, match="span 2 series"):
        read_dicom_series(ct5n + ct2)
    uid = str(pydicom.dcmread(ct5n[0]).SeriesInstanceUID)
    assert read_dicom_series(ct5n + ct2, series_uid=uid).checksum() == read_dicom_series(ct5n).checksum()
    with pytest.raises(CTReadError, match="no file belongs"):
        read_dicom_series(ct5n, series_uid="1.2.3")


# ---------------------------------------------------------------- synthetic oblique series


def test_synthetic_oblique_affine_and_values(tmp_path, ctw):
    files = ctw.write_synthetic_series(tmp_path / "oblique", order=[3, 0, 4, 1, 2])
    vol = read_dicom_series(files)
    assert vol.shape == (4, 3, 5)  # (Columns, Rows, slices)
    # By hand: LPS columns r*0.75, c*0.5, n*1.25, origin (10,-20,30); then negate the x and y rows.
    expected = np.array(
        [
            [-0.27, 0.40, -0.60, -10.0],
            [-0.36, -0.30, -0.80, 20.0],
            [-0.60, 0.00, 0.75, 30.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    np.testing.assert_allclose(vol.affine, expected, atol=1e-9)
    # Voxel (i=col 3, j=row 2, k=4): raw 100*4 + 10*2 + 3 = 423 → HU 2*423 - 1000.
    assert vol.hu[3, 2, 4] == 2 * 423 - 1000
    lps = np.array([10, -20, 30]) + 3 * 0.75 * np.array(ctw.ROW) + 2 * 0.5 * np.array(ctw.COL)
    lps = lps + 4 * 1.25 * np.array(ctw.NORMAL)
    ras = (vol.affine @ [3, 2, 4, 1])[:3]
    np.testing.assert_allclose(ras, [-lps[0], -lps[1], lps[2]], atol=1e-9)
    for k in range(5):
        np.testing.assert_array_equal(vol.hu[:, :, k], (2.0 * ctw.synthetic_pixels(k) - 1000).T)


def test_synthetic_shuffled_and_reversed_give_identical_volume(tmp_path, ctw):
    ref = read_dicom_series(ctw.write_synthetic_series(tmp_path / "a" / "series"))
    rev = read_dicom_series(ctw.write_synthetic_series(tmp_path / "b" / "series", order=[4, 3, 2, 1, 0]))
    shuf = ctw.write_synthetic_series(tmp_path / "c" / "series", order=[2, 4, 0, 3, 1])
    random.Random(0).shuffle(shuf)
    for other in (rev, read_dicom_series(shuf)):
        np.testing.assert_array_equal(other.hu, ref.hu)
        np.testing.assert_array_equal(other.affine, ref.affine)
        assert other.id == ref.id  # same folder name, same SeriesInstanceUID


def test_synthetic_mixed_orientation(tmp_path, ctw):
    tilted = {"col": (-0.8, 0.59, 0.01)}
    files = ctw.write_synthetic_series(tmp_path / "mixed", slice_kw={2: tilted})
    with pytest.raises(MixedOrientation, match="ImageOrientationPatient") as exc:
        read_dicom_series(files)
    assert exc.value.kind == "mixed_orientation"


def test_synthetic_mixed_pixel_spacing(tmp_path, ctw):
    files = ctw.write_synthetic_series(tmp_path / "mixed", slice_kw={1: {"pixel_spacing": (0.5, 0.8)}})
    with pytest.raises(MixedOrientation, match="PixelSpacing"):
        read_dicom_series(files)


def test_synthetic_missing_slice_is_uneven(tmp_path, ctw):
    files = ctw.write_synthetic_series(tmp_path / "gap", n=6)
    (tmp_path / "gap" / files[3].name).unlink()
    with pytest.raises(UnevenSpacing, match="gap 2.5000 mm") as exc:
        read_dicom_series([f for f in files if f.exists()])
    assert exc.value.path == str(tmp_path / "gap")


def test_synthetic_duplicate_position_is_uneven(tmp_path, ctw):
    dup = {4: {"position": ctw.synthetic_position(3)}}
    files = ctw.write_synthetic_series(tmp_path / "dup", slice_kw=dup)
    with pytest.raises(UnevenSpacing, match="duplicate"):
        read_dicom_series(files)


def test_synthetic_gantry_tilt_is_rejected(tmp_path, ctw):
    drift = {k: {"position": tuple(np.add(ctw.synthetic_position(k), np.multiply(ctw.ROW, 0.3 * k)))}
             for k in range(5)}
    files = ctw.write_synthetic_series(tmp_path / "tilt", slice_kw=drift)
    with pytest.raises(UnevenSpacing, match="off the slice normal"):
        read_dicom_series(files)


def test_synthetic_truncated_pixel_data_is_unreadable(tmp_path, ctw):
    files = ctw.write_synthetic_series(tmp_path / "trunc")
    raw = files[1].read_bytes()
    files[1].write_bytes(raw[:-6])
    with pytest.raises(UnreadableFile, match=files[1].name) as exc:
        read_dicom_series(files)
    assert exc.value.path == str(files[1])


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
def test_synthetic_infinite_rescale_is_non_finite(tmp_path, ctw):
    files = ctw.write_synthetic_series(tmp_path / "inf", slope=float("inf"))
    with pytest.raises(NonFiniteValues) as exc:
        read_dicom_series(files)
    assert exc.value.kind == "non_finite" and exc.value.path in {str(f) for f in files}


def test_synthetic_header_cut_is_unreadable(tmp_path, ctw):
    files = ctw.write_synthetic_series(tmp_path / "cut")
    files[0].write_bytes(files[0].read_bytes()[:400])
    with pytest.raises(UnreadableFile) as exc:
        read_dicom_series(files)
    assert exc.value.path == str(files[0])


def test_series_id_is_store_safe(tmp_path, ctw):
    folder = tmp_path / "my series (2)#é"
    vol = read_dicom_series(ctw.write_synthetic_series(folder))
    assert all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in vol.id)
    assert vol.id.startswith("my_series_2_")


def test_copied_real_series_keeps_values(tmp_path, dicomdir_tests):
    """A copy under another folder name: same voxels and affine, id follows the new folder."""
    src = dicomdir_tests / "98892001" / "CT5N"
    dst = tmp_path / "patient01"
    shutil.copytree(src, dst)
    a, b = read_dicom_series(_files(src)), read_dicom_series(_files(dst))
    assert a.checksum() == b.checksum()
    assert b.id.startswith("patient01_") and b.id.split("_")[-1] == a.id.split("_")[-1]


# ---------------------------------------------------------------- header values the reader parses

_PLACEHOLDER = "8642.975"  # a valid DS / IS-free number, replaced byte for byte by garbage below


def _garble(path, keyword, garbage: bytes):
    """Rewrite `keyword` of one slice file to the raw bytes `garbage` (len 8), which pydicom would
    refuse to write: a valid placeholder is saved, then replaced in the file's bytes."""
    ds = pydicom.dcmread(path)
    setattr(ds, keyword, "86429753" if keyword == "NumberOfFrames" else _PLACEHOLDER)
    ds.save_as(path)
    raw = path.read_bytes()
    placeholder = str(getattr(ds, keyword)).encode().ljust(8)
    assert raw.count(placeholder) == 1 and len(garbage) == 8
    path.write_bytes(raw.replace(placeholder, garbage))


@pytest.mark.filterwarnings("ignore:Invalid value for VR", "ignore:Value .* is not valid for elements")
@pytest.mark.parametrize("keyword", ["RescaleSlope", "RescaleIntercept", "SliceThickness", "NumberOfFrames"])
@pytest.mark.parametrize("garbage", [b"abc     ", b"1.5\\2.5 "])
def test_unparsable_numeric_tag_is_unreadable_naming_file_and_tag(tmp_path, ctw, keyword, garbage):
    files = ctw.write_synthetic_series(tmp_path / "bad")
    bad = files[0] if keyword == "SliceThickness" else files[2]  # the thickness is read from the first slice
    _garble(bad, keyword, garbage)
    with pytest.raises(UnreadableFile, match=keyword) as exc:
        read_dicom_series(files)
    assert exc.value.path == str(bad) and exc.value.kind == "unreadable"


def test_empty_slice_thickness_is_unknown(tmp_path, ctw):
    """SliceThickness is type 2 (may be present and empty): read as unknown, not an error."""
    files = ctw.write_synthetic_series(tmp_path / "thin")
    for path in files:
        ds = pydicom.dcmread(path)
        ds.SliceThickness = ""
        ds.save_as(path)
    assert read_dicom_series(files).meta["slice_thickness"] is None


def _drop(path, *keywords):
    ds = pydicom.dcmread(path)
    for keyword in keywords:
        delattr(ds, keyword)
    ds.save_as(path)


def test_slice_without_rescale_in_rescaled_series_is_mixed_rescale(tmp_path, ctw):
    files = ctw.write_synthetic_series(tmp_path / "mixed", slope=1.0, intercept=-1024.0)
    _drop(files[3], "RescaleSlope", "RescaleIntercept")
    with pytest.raises(MixedRescale) as exc:
        read_dicom_series(files)
    err = exc.value
    assert err.kind == "mixed_rescale" and err.path == str(files[3])
    assert files[0].name in err.reason and "RescaleSlope" in err.reason  # a file of each kind


def test_slice_with_half_a_rescale_is_mixed_rescale(tmp_path, ctw):
    files = ctw.write_synthetic_series(tmp_path / "half")
    _drop(files[1], "RescaleIntercept")
    with pytest.raises(MixedRescale, match="RescaleIntercept") as exc:
        read_dicom_series(files)
    assert exc.value.path == str(files[1])


def test_series_without_any_rescale_reads_stored_values_and_says_so(tmp_path, ctw):
    files = ctw.write_synthetic_series(tmp_path / "none")
    for path in files:
        _drop(path, "RescaleSlope", "RescaleIntercept")
    vol = read_dicom_series(files)
    assert vol.meta["rescale_defaulted"] is True and vol.meta["rescale"] == [[1.0, 0.0]]
    np.testing.assert_array_equal(vol.hu[:, :, 0], ctw.synthetic_pixels(0).T.astype(np.float32))
    assert read_dicom_series(ctw.write_synthetic_series(tmp_path / "all")).meta["rescale_defaulted"] is False


def test_a_series_read_as_stored_hu_is_rendered_with_a_warning_in_the_report(tmp_path, ctw):
    """No slice carries a rescale: the values are taken as HU (as some exports store them), and the
    run report says so for that CT rather than keeping it to the CT's in-memory metadata."""
    import json

    from drrkit.geometry.recipe import Recipe
    from drrkit.pipeline import RenderJob, render_corpus
    from drrkit.pipeline.report import report_path

    files = ctw.write_synthetic_series(tmp_path / "cts" / "none")
    for path in files:
        _drop(path, "RescaleSlope", "RescaleIntercept")
    recipe = Recipe.from_dict({"name": "mini", "detector": {"sdd": 1020, "height": 8, "width": 8, "delx": 4.0,
                                                            "dely": 4.0},
                               "poses": {"sampling": "grid", "rotation": {"z": {"start": 0, "stop": 0, "num": 1}},
                                         "translation": {"y": 700}}})
    report = render_corpus(RenderJob(recipe=recipe, out=tmp_path / "s.zarr", ct_dir=tmp_path / "cts", device="cpu"))
    assert report.exit_code == 0
    [row] = json.loads(report_path(tmp_path / "s.zarr").read_text())["results"]
    assert row["status"] == "done" and "read as HU" in row["warnings"][0] and "none" in row["warnings"][0]


def test_a_series_copied_into_two_folders_names_both_copies(tmp_path, ctw):
    """Two copies of one series (same SeriesInstanceUID) in sibling folders are one series to
    DICOM; the duplicate positions are named with their folders, and the likely cause said."""
    import shutil

    first = ctw.write_synthetic_series(tmp_path / "study" / "a")
    shutil.copytree(first[0].parent, tmp_path / "study" / "b")
    files = sorted((tmp_path / "study").rglob("*.dcm"))
    with pytest.raises(UnevenSpacing, match=r"\(a/IM0000.dcm, b/IM0000.dcm\) \(the series is in more than one folder"):
        read_dicom_series(files)


def test_a_copied_series_is_rendered_once_from_its_first_folder_with_a_warning(tmp_path, ctw):
    """The same SOP instances in two folders (a copy): discovery keeps the first folder's files,
    the CT renders as from one folder, and the run report says which files were left out. A file
    with a copy's UID but another size is not taken for a copy: the reader names the clash."""
    import json
    import shutil

    from drrkit.ct.discover import discover_cts
    from drrkit.geometry.recipe import Recipe
    from drrkit.pipeline import RenderJob, render_corpus
    from drrkit.pipeline.report import report_path
    from drrkit.store import open_corpus

    ctw.write_synthetic_series(tmp_path / "cts" / "study" / "a")
    shutil.copytree(tmp_path / "cts" / "study" / "a", tmp_path / "cts" / "study" / "b")
    ctw.write_synthetic_series(tmp_path / "alone" / "a")
    [source], errors = discover_cts(tmp_path / "cts", jobs=1)
    assert errors == [] and source.path.endswith("study/a") and len(source.files) == 5
    assert [p.rsplit("/", 2)[-2:] for p in source.copies] == [["b", f"IM000{k}.dcm"] for k in range(5)]
    recipe = Recipe.from_dict({"name": "mini", "detector": {"sdd": 1020, "height": 8, "width": 8, "delx": 4.0,
                                                            "dely": 4.0},
                               "poses": {"sampling": "grid", "rotation": {"z": {"start": 0, "stop": 0, "num": 1}},
                                         "translation": {"y": 700}}})
    report = render_corpus(RenderJob(recipe=recipe, out=tmp_path / "s.zarr", ct_dir=tmp_path / "cts", device="cpu"))
    alone = render_corpus(RenderJob(recipe=recipe, out=tmp_path / "t.zarr", ct_dir=tmp_path / "alone", device="cpu"))
    assert report.exit_code == 0 and alone.exit_code == 0
    [row] = json.loads(report_path(tmp_path / "s.zarr").read_text())["results"]
    assert row["status"] == "done" and "5 file(s) left out as copies" in row["warnings"][0]
    np.testing.assert_array_equal(np.asarray(open_corpus(tmp_path / "s.zarr").images[:]),
                                  np.asarray(open_corpus(tmp_path / "t.zarr").images[:]))
    # another size under a copied UID: both files stay, and reading names the duplicate position
    with open(tmp_path / "cts" / "study" / "b" / "IM0002.dcm", "ab") as f:
        f.write(b"\0\0")
    [source], _ = discover_cts(tmp_path / "cts", jobs=1)
    assert len(source.files) == 6 and len(source.copies) == 4
    with pytest.raises(UnevenSpacing, match="the series is in more than one folder"):
        read_dicom_series([type(tmp_path)(p) for p in source.files])
