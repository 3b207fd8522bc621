"""Real radiographs: PNG (8/16-bit, colour), JPEG, DICOM (rescale, window, MONOCHROME1), folders."""

import numpy as np
import pytest
from PIL import Image

from drrkit.train.real import RealImageError, RealRadiographs, find_images, labelled_folder, read_radiograph


def ramp(h=16, w=20):
    return np.tile(np.linspace(0, 1, w), (h, 1))


def write_dicom(path, pixels, photometric="MONOCHROME2", slope=1.0, intercept=0.0, window=None):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_png_jpeg_and_colour(tmp_path):
    Image.fromarray((ramp() * 255).astype(np.uint8)).save(tmp_path / "a.png")
    Image.fromarray((ramp() * 60000).astype(np.uint16)).save(tmp_path / "b16.png")
    Image.fromarray((ramp() * 255).astype(np.uint8)).convert("RGB").save(tmp_path / "c.jpg", quality=95)
    for name in ("a.png", "b16.png", "c.jpg"):
        img = read_radiograph(tmp_path / name)
        assert img.shape == (16, 20) and img.dtype == np.float32
        assert np.all(np.diff(img[8, ::4]) > 0), name  # brightness rises left to right
    assert read_radiograph(tmp_path / "b16.png").max() > 50000  # 16 bits kept


def test_dicom_rescale_window_and_monochrome1(tmp_path):
    raw = (ramp() * 4000).astype(np.uint16)
    mono2 = read_radiograph(write_dicom(tmp_path / "m2.dcm", raw, slope=2.0, intercept=-100.0))
    np.testing.assert_allclose(mono2, raw * 2.0 - 100.0)  # modality LUT applied
    mono1 = read_radiograph(write_dicom(tmp_path / "m1.dcm", raw, photometric="MONOCHROME1"))
    assert np.all(np.diff(mono1[8]) <= 0) and mono1[8, 0] > mono1[8, -1]  # inverted: high values dark
    windowed = read_radiograph(write_dicom(tmp_path / "w.dcm", raw, window=(1000, 1000)))
    assert windowed[8, -1] == windowed[8, -2] and windowed[8, 0] == windowed[8, 1]  # clipped both ends
    assert windowed[8, 0] < windowed[8, -1]


def test_folder_dataset_recursive_and_errors(tmp_path):
    (tmp_path / "x" / "y").mkdir(parents=True)
    Image.fromarray((ramp() * 255).astype(np.uint8)).save(tmp_path / "x" / "y" / "deep.png")
    Image.fromarray((ramp() * 255).astype(np.uint8)).save(tmp_path / "top.png")
    (tmp_path / "notes.txt").write_text("not an image")
    data = RealRadiographs.from_folder(tmp_path, 24)
    assert [p.name for p in data.paths] == ["top.png", "deep.png"]  # sorted, recursive, images only
    item = data[(3, 1, 1)]
    assert item["image"].shape == (1, 24, 24) and item["step"] == 3
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    (tmp_path / "empty").mkdir()
    with pytest.raises(RealImageError, match="empty: no radiographs"):
        find_images(tmp_path / "empty")
    with pytest.raises(RealImageError, match="missing: no such folder"):
        find_images(tmp_path / "missing")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(RealImageError, match="bad.png"):
        read_radiograph(tmp_path / "bad.png")


def test_labelled_folder(tmp_path):
    for cls, n in (("normal", 2), ("effusion", 3)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            Image.fromarray((ramp() * 255).astype(np.uint8)).save(tmp_path / cls / f"{i}.png")
    paths, labels, classes = labelled_folder(tmp_path)
    assert classes == ["effusion", "normal"] and labels.tolist() == [0, 0, 0, 1, 1] and len(paths) == 5
