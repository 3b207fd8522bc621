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
