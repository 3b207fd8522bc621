"""Read one DICOM CT series (one file per axial/oblique slice) into a CTVolume.

Convention (exactly what `read_dicom_series` returns):

* DICOM patient coordinates are LPS millimetres; the CTVolume affine is RAS+, so
  ``affine = diag(-1, -1, 1, 1) @ affine_LPS``.
* Voxel index order is (i, j, k) = (column index, row index, slice index), so ``hu`` has shape
  (Columns, Rows, n_slices); each slice's ``pixel_array`` (rows, cols) is transposed to (cols, rows).
* With r = row cosine (ImageOrientationPatient[0:3], direction of increasing column index),
  c = column cosine (ImageOrientationPatient[3:6], direction of increasing row index) and
  n = r × c (the slice normal), the LPS affine columns are
  i-axis = r * PixelSpacing[1] (column spacing), j-axis = c * PixelSpacing[0] (row spacing),
  k-axis = n * slice_spacing, origin = ImagePositionPatient of the first sorted slice.
* Slices are sorted by ascending projection of ImagePositionPatient onto n (file order and
  InstanceNumber are ignored, so series stored in reverse order read identically);
  slice_spacing is the median gap between consecutive projections.
* Values are HU float32 = RescaleSlope * stored value + RescaleIntercept (in float64), per slice;
  a series whose slices share one rescale is held as its stored integers (`CTVolume.stored`).
  Every slice carries both tags, or none does (some exports store HU directly: slope 1, intercept
  0, recorded as ``meta["rescale_defaulted"]``); a series that mixes the two is refused.

Nothing is repaired silently: unreadable files, non-CT modality, fewer than 3 slices, mixed
orientation or in-plane geometry, uneven spacing / duplicate or sheared slice positions, a
numeric tag that does not parse, slices with and without a rescale and non-finite values each
raise a typed `CTReadError` naming the file or series folder.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from drrkit.ct.errors import (
    CTReadError,
    MixedOrientation,
    MixedRescale,
    NonFiniteValues,
    Not3D,
    NotCT,
    UnevenSpacing,
    UnreadableFile,
)
from drrkit.ct.nifti import finite_by_construction, safe_id
from drrkit.ct.stored import StoredVoxels
from drrkit.ct.volume import CTVolume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
ORIENTATION_TOL = 1e-4
DICOM_PARSE_ERRORS = (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, struct.error)
_PIXEL_ERRORS = (ValueError, AttributeError, RuntimeError, NotImplementedError, TypeError, KeyError, zlib.error)
_REQUIRED = ("Rows", "Columns", "PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient")


def series_folder(files: list[Path]) -> Path:
    """Common parent folder of a series' files."""
    parents = {str(Path(f).parent) for f in files}
    return Path(os.path.commonpath(sorted(parents))) if parents else Path(".")


def series_id(folder: Path, series_uid: str) -> str:
    """Filesystem- and zarr-safe id: series folder name + 8 hex of sha1(SeriesInstanceUID)."""
    digest = hashlib.sha1(series_uid.encode("utf-8")).hexdigest()[:8]
    return f"{safe_id(folder.name, 'series')}_{digest}"


def _read(path: Path) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path, force=False)
    except DICOM_PARSE_ERRORS as exc:
        raise UnreadableFile(path, f"not a readable DICOM file ({type(exc).__name__}: {exc})") from exc


def _check_ct(path: Path, ds: pydicom.Dataset) -> None:
    modality = ds.get("Modality")
    if modality is None:
        raise UnreadableFile(path, "DICOM file has no Modality (0008,0060) element (truncated or not an image)")
    if str(modality).strip().upper() != "CT":
        raise NotCT(path, f"Modality is {str(modality)!r}, not 'CT'")
    missing = [k for k in _REQUIRED if ds.get(k) is None]
    if missing:
        raise UnreadableFile(path, f"CT slice lacks {', '.join(missing)} (truncated or not an axial image)")
    frames = _number(path, ds, "NumberOfFrames")
    if frames is not None and frames > 1:
        raise UnreadableFile(path, f"multi-frame DICOM ({frames:g} frames) is not supported")


def _select_series(datasets: list[tuple[Path, pydicom.Dataset]], series_uid: str | None, folder: Path):
    """Keep the files of `series_uid` (all files if None); returns (datasets, uid)."""
    def uid_of(ds: pydicom.Dataset) -> str:
        return str(ds.get("SeriesInstanceUID") or "")

    if series_uid is not None:
        chosen = [(p, ds) for p, ds in datasets if uid_of(ds) == series_uid]
        if not chosen:
            found = sorted({uid_of(ds) for _, ds in datasets})
            raise CTReadError(folder, f"no file belongs to series {series_uid!r} (found {found})")
        return chosen, series_uid
    return datasets, None


def _single_series(folder: Path, datasets: list[tuple[Path, pydicom.Dataset]]) -> str:
    uids = sorted({str(ds.get("SeriesInstanceUID") or "") for _, ds in datasets})
    if len(uids) > 1:
        raise CTReadError(folder, f"files span {len(uids)} series {uids}; pass one series (series_uid=...)")
    if not uids[0]:
        raise UnreadableFile(datasets[0][0], "DICOM file has no SeriesInstanceUID")
    return uids[0]


def _number(path: Path, ds: pydicom.Dataset, keyword: str) -> float | None:
    """A single-valued numeric element (DS / IS) as a float, None where absent or empty; a value
    that is not one number (pydicom keeps an invalid DS as its text) raises UnreadableFile."""
    try:
        value = ds.get(keyword)
    except DICOM_PARSE_ERRORS as exc:
        raise UnreadableFile(path, f"{keyword} cannot be read ({type(exc).__name__}: {exc})") from exc
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise UnreadableFile(path, f"{keyword} is not a number: {str(value)!r}") from exc


def _floats(path: Path, ds: pydicom.Dataset, keyword: str, n: int) -> np.ndarray:
    """A multi-valued numeric element as n finite floats, else UnreadableFile."""
    try:
        values = np.asarray([float(v) for v in np.atleast_1d(ds.get(keyword))], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UnreadableFile(path, f"{keyword} is not numeric: {ds.get(keyword)!r}") from exc
    if values.shape != (n,) or not np.all(np.isfinite(values)):
        raise UnreadableFile(path, f"{keyword} must hold {n} finite numbers, got {values.tolist()}")
    return values


def _geometry(path: Path, ds: pydicom.Dataset) -> tuple[np.ndarray, tuple[int, int], np.ndarray]:
    iop = _floats(path, ds, "ImageOrientationPatient", 6)
    spacing = _floats(path, ds, "PixelSpacing", 2)
    if np.any(spacing <= 0):
        raise UnreadableFile(path, f"PixelSpacing must be positive, got {spacing.tolist()}")
    return iop, (int(ds.Rows), int(ds.Columns)), spacing


def _check_consistent(folder: Path, datasets: list[tuple[Path, pydicom.Dataset]]):
    """All slices share orientation, matrix size and pixel spacing; returns (iop, (rows, cols), spacing)."""
    iop0, size0, sp0 = _geometry(*datasets[0])
    for path, ds in datasets[1:]:
        iop, size, sp = _geometry(path, ds)
        if np.max(np.abs(iop - iop0)) > ORIENTATION_TOL:
            raise MixedOrientation(
                path,
                f"ImageOrientationPatient {iop.tolist()} differs from {iop0.tolist()} of "
                f"{datasets[0][0].name} in series folder {folder}",
            )
        if size != size0 or np.max(np.abs(sp - sp0)) > ORIENTATION_TOL * max(1.0, float(sp0.max())):
            raise MixedOrientation(
                path,
                f"slice grid Rows/Columns {size} PixelSpacing {sp.tolist()} differs from {size0} "
                f"{sp0.tolist()} of {datasets[0][0].name} in series folder {folder}",
            )
    r, c = iop0[:3], iop0[3:]
    if abs(np.linalg.norm(r) - 1) > 1e-3 or abs(np.linalg.norm(c) - 1) > 1e-3 or abs(float(r @ c)) > 1e-3:
        raise UnreadableFile(datasets[0][0], f"ImageOrientationPatient {iop0.tolist()} is not orthonormal")
    return iop0, size0, sp0


def _within(folder: Path, path) -> str:
    """A slice's path relative to its series folder (the common parent of its files)."""
    try:
        return str(Path(path).relative_to(folder))
    except ValueError:
        return str(path)


def _sort_and_space(folder: Path, datasets, normal: np.ndarray):
    """Sort slices along `normal`; return (sorted datasets, positions (N,3), slice spacing)."""
    pos = np.stack([_floats(p, ds, "ImagePositionPatient", 3) for p, ds in datasets])
    proj = pos @ normal
    order = np.argsort(proj, kind="stable")
    datasets, pos, proj = [datasets[i] for i in order], pos[order], proj[order]
    gaps = np.diff(proj)
    dup = np.flatnonzero(gaps < 1e-3)
    if dup.size:
        a, b = (_within(folder, datasets[k][0]) for k in (dup[0], dup[0] + 1))
        copies = " (the series is in more than one folder: a copy?)" if Path(a).parent != Path(b).parent else ""
        raise UnevenSpacing(folder, f"duplicate slice position {proj[dup[0]]:.4f} mm along the normal "
                                    f"({a}, {b}){copies}")
    step = float(np.median(gaps))
    tol = max(0.01 * step, 0.01)
    bad = np.flatnonzero(np.abs(gaps - step) > tol)
    if bad.size:
        g = bad[0]
        raise UnevenSpacing(
            folder, f"slice gap {gaps[g]:.4f} mm between {datasets[g][0].name} and {datasets[g + 1][0].name} "
            f"deviates from the median spacing {step:.4f} mm ({bad.size} uneven gap(s))"
        )
    drift = (pos - pos[0]) - np.outer(proj - proj[0], normal)
    worst = float(np.linalg.norm(drift, axis=1).max())
    if worst > tol:
        raise UnevenSpacing(
            folder, f"slice positions drift {worst:.4f} mm off the slice normal (gantry tilt / sheared series)"
        )
    return datasets, pos, step


def _own_rescale(path: Path, ds: pydicom.Dataset) -> tuple[float, float] | None:
    """A slice's (RescaleSlope, RescaleIntercept), None where it carries neither."""
    slope, inter = _number(path, ds, "RescaleSlope"), _number(path, ds, "RescaleIntercept")
    if slope is None and inter is None:
        return None
    if slope is None or inter is None:
        has, lacks = ("RescaleSlope", "RescaleIntercept") if inter is None else ("RescaleIntercept", "RescaleSlope")
        raise MixedRescale(path, f"slice has {has} but no {lacks}; HU need both")
    if not (np.isfinite(slope) and np.isfinite(inter)):
        raise NonFiniteValues(path, f"non-finite RescaleSlope {slope} / RescaleIntercept {inter}")
    if slope == 0:
        raise UnreadableFile(path, "RescaleSlope is 0")
    return slope, inter


def _rescales(datasets) -> tuple[list[tuple[float, float]], bool]:
    """Each slice's rescale, and whether none carries one (then slope 1, intercept 0: the stored
    values are taken as HU). Slices with and without a rescale in one series raise MixedRescale."""
    own = [_own_rescale(path, ds) for path, ds in datasets]
    with_one = [path for (path, _), r in zip(datasets, own) if r is not None]
    if not with_one:
        return [(1.0, 0.0)] * len(datasets), True
    without = [path for (path, _), r in zip(datasets, own) if r is None]
    if without:
        raise MixedRescale(
            without[0], f"slice has no RescaleSlope/RescaleIntercept but {with_one[0].name} of the same series "
            f"has them ({len(without)} of {len(datasets)} slices lack them); its HU would be in other units"
        )
    return own, False


def _slice_pixels(path: Path, ds: pydicom.Dataset, size: tuple[int, int]) -> np.ndarray:
    """A slice's stored values (rows, cols)."""
    try:
        raw = ds.pixel_array
    except _PIXEL_ERRORS as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        named = f" ({syntax.name})" if syntax is not None else ""
        raise UnreadableFile(path, f"cannot decode pixel data{named}: {type(exc).__name__}: {exc}") from exc
    if raw.shape != size:
        raise UnreadableFile(path, f"pixel array shape {raw.shape} != (Rows, Columns) {size}")
    return raw


def _slice_hu(values: np.ndarray, slope: float, inter: float) -> np.ndarray:
    """float32 HU of one slice: RescaleSlope * stored value + RescaleIntercept, in float64."""
    return (values.astype(np.float64) * slope + inter).astype(np.float32)


def _voxels(datasets, size: tuple[int, int], rescales: list) -> tuple[np.ndarray | None, StoredVoxels | None]:
    """(float32 HU, None) or (None, stored voxels) of the sorted slices, given each slice's rescale.

    Fortran order: each slice is one contiguous block, as in a NIfTI file (no strided writes, and
    CTVolume.checksum hashes it in place). A series whose slices share one rescale (nearly all) is
    kept as its stored integers (drrkit/ct/stored.py), with the same float64 rescale per voxel."""
    values = None
    for k, (path, ds) in enumerate(datasets):
        raw = _slice_pixels(path, ds, size)
        if values is None or raw.dtype != values.dtype:
            kind = raw.dtype if values is None else np.result_type(values.dtype, raw.dtype)
            grown = np.empty((size[1], size[0], len(datasets)), dtype=kind, order="F")
            if values is not None:
                grown[:, :, :k] = values[:, :, :k]
            values = grown
        values[:, :, k] = raw.T
    if len(set(rescales)) == 1:
        slope, inter = rescales[0]
        stored = StoredVoxels.of(values, slope, inter, np.float64)
        if stored is not None and finite_by_construction(values.dtype, slope, inter):
            return None, stored
    hu = np.empty(values.shape, dtype=np.float32, order="F")
    for k, ((path, _), (slope, inter)) in enumerate(zip(datasets, rescales)):
        hu[:, :, k] = _slice_hu(values[:, :, k], slope, inter)
        if not np.all(np.isfinite(hu[:, :, k])):
            raise NonFiniteValues(path, "slice has NaN or infinite values after rescale")
    return hu, None


def _affine(iop: np.ndarray, spacing: np.ndarray, normal: np.ndarray, origin: np.ndarray, step: float):
    """RAS+ voxel→mm affine (see module docstring): LPS columns r*dc, c*dr, n*step, origin; then flip x, y."""
    r, c, n = iop[:3], iop[3:], normal
    lps = np.eye(4)
    lps[:3, 0] = r * spacing[1]
    lps[:3, 1] = c * spacing[0]
    lps[:3, 2] = n * step
    lps[:3, 3] = origin
    return LPS_TO_RAS @ lps


def read_dicom_series(files: list[Path], series_uid: str | None = None) -> CTVolume:
    """Read one CT series from its slice files (any order) into float32 HU + RAS+ affine.

    `files` should hold one series; with `series_uid` given, only files of that series are used.
    See the module docstring for the exact voxel-order and affine convention.
    """
    paths = sorted(Path(f) for f in files)
    if not paths:
        raise Not3D(Path("."), "no DICOM files given")
    folder = series_folder(paths)
    datasets, uid = _select_series([(p, _read(p)) for p in paths], series_uid, folder)
    for path, ds in datasets:
        _check_ct(path, ds)
    uid = uid or _single_series(folder, datasets)
    if len(datasets) < 3:
        raise Not3D(folder, f"series {uid} has {len(datasets)} slice(s); a CT volume needs at least 3")
    iop, size, spacing = _check_consistent(folder, datasets)
    normal = np.cross(iop[:3], iop[3:])
    normal /= np.linalg.norm(normal)
    datasets, pos, step = _sort_and_space(folder, datasets, normal)
    rescales, defaulted = _rescales(datasets)
    thickness = _number(*datasets[0], "SliceThickness")
    hu, stored = _voxels(datasets, size, rescales)
    meta = {
        "format": "dicom",
        "series_uid": uid,
        "n_slices": len(datasets),
        "slice_spacing": step,
        "slice_thickness": thickness,
        "rescale": [list(sr) for sr in sorted(set(rescales))],
        "rescale_defaulted": defaulted,  # no slice carries a rescale: stored values taken as HU
        "files": [str(p) for p, _ in datasets],
    }
    return CTVolume(hu=hu, affine=_affine(iop, spacing, normal, pos[0], step), id=series_id(folder, uid),
                    source=str(folder), meta=meta, stored=stored)
