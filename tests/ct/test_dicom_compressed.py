"""Compressed DICOM CT series (what PACS exports and many archives hold) read as their uncompressed
originals: JPEG Lossless (process 14), JPEG-LS and JPEG 2000 lossless, decoded by GDCM
(python-gdcm, a dependency) through pydicom. A syntax no installed decoder handles fails with a
clear error naming the file and the transfer syntax.

The series are pydicom's real CT5N slices transcoded by GDCM, and one slice encoded elsewhere
(pydicom's MR_small_jpeg_ls_lossless.dcm against its uncompressed MR_small.dcm) checks the decoder
on a codestream it did not write.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from drrkit.ct import UnreadableFile, read_dicom_series

gdcm = pytest.importorskip("gdcm")  # a declared dependency: skipped only in a broken install

SYNTAXES = {
    "jpeg-lossless-p14": "JPEGLosslessProcess14_1",
    "jpeg-ls-lossless": "JPEGLSLossless",
    "jpeg2000-lossless": "JPEG2000Lossless",
}


def _files(folder):
    return sorted(p for p in folder.iterdir() if p.is_file())


def _transcode(src, dst, syntax: str) -> None:
    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    assert reader.Read(), src
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, syntax)))
    change.SetInput(reader.GetImage())
    assert change.Change(), (src, syntax)
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(dst))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write(), dst


@pytest.mark.parametrize("name", sorted(SYNTAXES))
def test_compressed_series_reads_as_the_original(tmp_path, dicomdir_tests, name):
    src = dicomdir_tests / "98892001" / "CT5N"
    dst = tmp_path / "CT5N"
    dst.mkdir()
    for path in _files(src):
        _transcode(path, dst / path.name, SYNTAXES[name])
    assert pydicom.dcmread(_files(dst)[0]).file_meta.TransferSyntaxUID.is_compressed
    original, compressed = read_dicom_series(_files(src)), read_dicom_series(_files(dst))
    np.testing.assert_array_equal(compressed.hu, original.hu)
    np.testing.assert_array_equal(compressed.affine, original.affine)
    assert compressed.checksum() == original.checksum()
    assert compressed.stored is not None  # one rescale for the series: held as its integers


def test_jpeg_ls_from_another_encoder_decodes_exactly(pydicom_test_files):
    compressed = pydicom.dcmread(pydicom_test_files / "MR_small_jpeg_ls_lossless.dcm")
    original = pydicom.dcmread(pydicom_test_files / "MR_small.dcm")
    np.testing.assert_array_equal(compressed.pixel_array, original.pixel_array)


def test_undecodable_syntax_names_file_and_syntax(tmp_path, pydicom_test_files, ctw):
    """12-bit JPEG Extended (lossy), which no installed decoder takes, as a three-slice CT series."""
    source = pydicom.dcmread(pydicom_test_files / "JPGExtended.dcm")
    folder = tmp_path / "series"
    folder.mkdir()
    for k in range(3):
        ds = source.copy()
        ds.Modality = "CT"
        ds.SeriesInstanceUID = "1.2.3.4.5"
        ds.ImagePositionPatient = [0.0, 0.0, 2.5 * k]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [0.7, 0.7]
        ds.save_as(folder / f"IM{k}.dcm")
    with pytest.raises(UnreadableFile, match=r"IM0\.dcm.*JPEG Extended"):
        read_dicom_series(_files(folder))
