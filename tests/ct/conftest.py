"""Fixtures for the CT ingest tests: synthetic NIfTI / DICOM writers and pydicom's test data."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import nibabel as nib
import pydicom
import pydicom.data
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

# A double-oblique orthonormal frame with exact decimal cosines (LPS): r × c = n.
OBLIQUE_ROW = (0.36, 0.48, -0.8)
OBLIQUE_COL = (-0.8, 0.6, 0.0)
OBLIQUE_NORMAL = (0.48, 0.64, 0.6)


@pytest.fixture(scope="session")
def pydicom_test_files() -> Path:
    """pydicom's bundled test_files folder (shipped in the wheel; never downloaded)."""
    path = Path(pydicom.data.__file__).parent / "test_files"
    assert (path / "dicomdirtests").is_dir(), f"pydicom test data missing under {path}"
    return path


@pytest.fixture(scope="session")
def dicomdir_tests(pydicom_test_files: Path) -> Path:
    return pydicom_test_files / "dicomdirtests"


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, **header_fields) -> Path:
    """Save `data` with `affine` (as sform and qform); then overwrite raw header fields if given.

    Patching the header after saving lets tests set scl_slope / scl_inter / srow_* exactly,
    which nibabel would otherwise normalise on save.
    """
    nib.save(nib.Nifti1Image(data, affine), str(path))
    if header_fields:
        assert path.suffix == ".nii", "header patching needs an uncompressed file"
        with open(path, "r+b") as f:
            header = nib.Nifti1Header.from_fileobj(f)
            for key, value in header_fields.items():
                header[key] = value
            f.seek(0)
            header.write_to(f)
    return path


def write_ct_slice(
    path: Path,
    pixels: np.ndarray,
    *,
    position,
    row=OBLIQUE_ROW,
    col=OBLIQUE_COL,
    pixel_spacing=(0.5, 0.75),
    slope=2.0,
    intercept=-1000.0,
    series_uid: str,
    instance: int = 1,
    modality: str = "CT",
) -> Path:
    """One int16 DICOM slice; `pixels` is (Rows, Columns) as pixel_array returns it."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = series_uid
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row, *col)]
    ds.PixelSpacing = [f"{v:g}" for v in pixel_spacing]
    ds.SliceThickness = "1.25"
    ds.RescaleSlope = f"{slope:g}"
    ds.RescaleIntercept = f"{intercept:g}"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def synthetic_pixels(k: int, rows: int = 3, cols: int = 4) -> np.ndarray:
    """Raw slice k: value 100*k + 10*row + col, unique per voxel."""
    r, c = np.mgrid[0:rows, 0:cols]
    return (100 * k + 10 * r + c).astype(np.int16)


def synthetic_position(k: int, origin=(10.0, -20.0, 30.0), step: float = 1.25, normal=OBLIQUE_NORMAL):
    return tuple(o + k * step * n for o, n in zip(origin, normal))


def write_synthetic_series(
    folder: Path, n: int = 5, order=None, series_uid: str = "1.2.826.0.1.3680043.8.498.1", slice_kw=None, **kw
) -> list[Path]:
    """n oblique slices k = 0..n-1 at origin + k*1.25*normal, written in `order` as IM0000.dcm, ...

    `slice_kw` maps k to extra write_ct_slice arguments for that slice only (e.g. a position).
    """
    folder.mkdir(parents=True, exist_ok=True)
    order = list(range(n)) if order is None else list(order)
    paths = []
    for idx, k in enumerate(order):
        args = {"position": synthetic_position(k), **kw, **(slice_kw or {}).get(k, {})}
        paths.append(
            write_ct_slice(folder / f"IM{idx:04d}.dcm", synthetic_pixels(k), series_uid=series_uid,
                           instance=idx + 1, **args)
        )
    return paths


@pytest.fixture
def ctw() -> SimpleNamespace:
    """The writer helpers above, as a fixture (test modules cannot import conftest reliably)."""
    return SimpleNamespace(
        write_nifti=write_nifti,
        write_ct_slice=write_ct_slice,
        write_synthetic_series=write_synthetic_series,
        synthetic_pixels=synthetic_pixels,
        synthetic_position=synthetic_position,
        ROW=OBLIQUE_ROW,
        COL=OBLIQUE_COL,
        NORMAL=OBLIQUE_NORMAL,
    )
