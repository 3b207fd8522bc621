"""Stored voxels: integer CTs held as the file's values plus their rescale give the HU nibabel and
the DICOM rescale give, bit for bit, on the host and through torch; the checksum is unchanged."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from drrkit.ct import CTVolume, read_dicom_series, read_nifti
from drrkit.ct.overrides import HeaderOverride
from drrkit.ct.stored import BLOCK_VOXELS, StoredVoxels


def _int16_volume(shape=(37, 29, 23), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1024, 3072, size=shape, dtype=np.int16)


def _save(path, data, slope=None, inter=None):
    img = nib.Nifti1Image(data, np.diag([0.7, 0.8, 2.5, 1.0]))
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    nib.save(img, str(path))
    return path


def _assert_same_bits(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
    np.testing.assert_array_equal(a.view(np.int32), b.view(np.int32))


@pytest.mark.parametrize("slope, inter", [(None, None), (1.0, -1024.0), (0.37, -1000.3), (2.5, 0.0)])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_nifti_integers_are_held_stored_with_nibabels_hu(tmp_path, slope, inter, suffix):
    path = _save(tmp_path / f"ct{suffix}", _int16_volume(), slope, inter)
    ct = read_nifti(path)
    assert ct.stored is not None and ct.stored.values.dtype == np.int16
    expected = nib.load(str(path)).get_fdata(dtype=np.float32)
    _assert_same_bits(ct.hu, expected)
    assert ct.hu.flags.f_contiguous  # the file's voxel order
    assert ct.hu_range() == (float(expected.min()), float(expected.max()))
    assert ct.checksum() == CTVolume(expected, ct.affine).checksum()  # same definition as before
    _assert_same_bits(ct.stored.hu_tensor(ct.stored.to_device("cpu")).numpy(), expected)


def test_manifest_rescale_is_computed_in_float64_as_nibabel_does(tmp_path):
    path = _save(tmp_path / "ct.nii.gz", _int16_volume(seed=1))
    override = HeaderOverride(rescale_slope=0.1, rescale_intercept=-1024.1)
    ct = read_nifti(path, override)
    assert ct.stored is not None and ct.stored.compute == np.float64
    expected = nib.load(str(path)).dataobj.get_unscaled().astype(np.float64) * 0.1 - 1024.1
    _assert_same_bits(ct.hu, expected.astype(np.float32))
    _assert_same_bits(ct.stored.hu_tensor(ct.stored.to_device("cpu")).numpy(), ct.hu)


def test_float_and_wide_files_are_read_as_float32(tmp_path):
    floats = _int16_volume(seed=2).astype(np.float32) + 0.25
    ct = read_nifti(_save(tmp_path / "f.nii.gz", floats))
    assert ct.stored is None
    np.testing.assert_array_equal(ct.hu, floats)
    wide = _int16_volume(seed=3).astype(np.int32)
    ct = read_nifti(_save(tmp_path / "w.nii.gz", wide))
    assert ct.stored is None and ct.hu.dtype == np.float32
    np.testing.assert_array_equal(ct.hu, wide.astype(np.float32))


def test_integer_rescale_that_overflows_float32_is_still_caught(tmp_path):
    from drrkit.ct import NonFiniteValues

    data = _int16_volume(seed=4)
    data[0, 0, 0] = 32767
    path = _save(tmp_path / "big.nii.gz", data)
    with pytest.raises(NonFiniteValues, match="big.nii.gz"):
        read_nifti(path, HeaderOverride(rescale_slope=1e36, rescale_intercept=0.0))


def test_stored_form_only_where_it_gains():
    ints = _int16_volume((4, 5, 6))
    assert StoredVoxels.of(ints.astype(np.float32), 1, 0, np.float32) is None
    assert StoredVoxels.of(ints.astype(">i2"), 1, 0, np.float32) is None  # foreign byte order
    assert StoredVoxels.of(ints.astype(np.int32), 1, 0, np.float32) is None
    low = (ints - ints.min()).astype(np.uint16)  # 12-bit DICOM values with intercept -1024
    narrowed = StoredVoxels.of(low, 1.0, -1024.0, np.float64)
    assert narrowed.values.dtype == np.int16 and narrowed.device_uploadable()
    np.testing.assert_array_equal(narrowed.hu(), low.astype(np.float64) - 1024.0)
    high = low.copy()
    high[0, 0, 0] = 40000
    assert StoredVoxels.of(high, 1.0, -1024.0, np.float64) is None
    with pytest.raises(ValueError, match="float32 or float64"):
        StoredVoxels.of(ints, 1, 0, np.float16)


def test_blocks_cover_volumes_larger_than_one_block():
    values = np.asfortranarray(np.random.default_rng(5).integers(-1000, 2000, (130, 90, 200), dtype=np.int16))
    assert values.size > 2 * BLOCK_VOXELS
    stored = StoredVoxels.of(values, np.float32(0.5), np.float32(-1000.0), np.float32)
    hu = stored.hu()
    expected = values.astype(np.float32) * np.float32(0.5) + np.float32(-1000.0)
    _assert_same_bits(hu, expected)
    assert hu.flags.f_contiguous
    _assert_same_bits(np.concatenate(list(stored.hu_blocks())), expected.ravel(order="F"))
    c_order = StoredVoxels.of(np.ascontiguousarray(values), np.float32(0.5), np.float32(-1000.0), np.float32)
    _assert_same_bits(c_order.hu(), expected)
    assert CTVolume(stored=c_order).checksum() == CTVolume(np.ascontiguousarray(expected)).checksum()


def test_negative_slope_range_is_exact():
    values = _int16_volume((6, 7, 8), seed=6)
    stored = StoredVoxels.of(values, -0.5, 10.0, np.float64)
    hu = stored.hu()
    assert stored.hu_range() == (float(hu.min()), float(hu.max()))


def test_volume_needs_exactly_one_form():
    values = StoredVoxels.of(_int16_volume((3, 4, 5)), 1, 0, np.float32)
    with pytest.raises(ValueError, match="not both"):
        CTVolume(values.hu(), np.eye(4), stored=values)
    with pytest.raises(ValueError, match="HU values or stored voxels"):
        CTVolume(None, np.eye(4))
    renamed = CTVolume(stored=values, id="a").with_id("b")
    assert renamed.id == "b" and renamed.stored is values


def test_dicom_series_with_one_rescale_is_stored_with_the_slice_hu(tmp_path, ctw):
    vol = read_dicom_series(ctw.write_synthetic_series(tmp_path / "s", order=[2, 0, 4, 1, 3]))
    assert vol.stored is not None and vol.stored.compute == np.float64
    for k in range(5):
        expected = (ctw.synthetic_pixels(k).astype(np.float64) * 2.0 - 1000.0).T.astype(np.float32)
        _assert_same_bits(np.ascontiguousarray(vol.hu[:, :, k]), np.ascontiguousarray(expected))
    _assert_same_bits(vol.stored.hu_tensor(vol.stored.to_device("cpu")).numpy(), vol.hu)


def test_dicom_series_with_per_slice_rescales_is_float32(tmp_path, ctw):
    files = ctw.write_synthetic_series(tmp_path / "s", slice_kw={3: {"slope": 0.5, "intercept": -1024.0}})
    vol = read_dicom_series(files)
    assert vol.stored is None and vol.meta["rescale"] == [[0.5, -1024.0], [2.0, -1000.0]]
    np.testing.assert_array_equal(vol.hu[:, :, 3], (0.5 * ctw.synthetic_pixels(3) - 1024.0).T)
    np.testing.assert_array_equal(vol.hu[:, :, 2], (2.0 * ctw.synthetic_pixels(2) - 1000.0).T)


@pytest.mark.gpu
def test_hu_made_on_cuda_are_the_hosts(tmp_path):
    for slope, inter, override in [(0.37, -1000.3, None), (None, None, HeaderOverride(rescale_slope=0.1,
                                                                                  rescale_intercept=-1024.1))]:
        ct = read_nifti(_save(tmp_path / "ct.nii.gz", _int16_volume(seed=7), slope, inter), override)
        on_gpu = ct.stored.hu_tensor(ct.stored.to_device("cuda"))
        assert on_gpu.is_cuda
        _assert_same_bits(on_gpu.cpu().numpy(), ct.hu)
        assert torch.cuda.is_available()
