"""Find CT inputs under a folder: NIfTI files and DICOM CT series, with per-input errors.

Rules (see `discover_cts`):

* ``*.nii`` / ``*.nii.gz`` files are NIfTI sources.
* Any directory named ``labels`` (any depth, any case) is skipped entirely: label maps live there.
  Hidden files and directories (name starting with ``.``) are skipped too, and so are Zarr stores
  (a directory named ``*.zarr`` or holding ``zarr.json``), so a store kept beside its CTs resumes.
  Symlinked directories are followed (each real directory once); one that cannot be listed is
  reported as UnreadableFile.
* Files with an obviously non-image extension (.txt .csv .json .md .png .jpg .yaml ...) and
  files named DICOMDIR are ignored.
* Every other file is probed as DICOM (header only). CT files are grouped by
  SeriesInstanceUID into one source per series; a file with the SOP Instance UID and size of
  one earlier by path is a copy (the series copied into a second folder) and is left out
  (`CTSource.copies`, warned about in the run report). A file with a DICOM-ish name (.dcm/.dicom/.ima,
  no extension, or a purely numeric extension as in UID-named files) that does not parse is
  reported as UnreadableFile (unless it has no extension and is plain text: README, LICENSE);
  other unparsable files are ignored. Known volume formats this
  package does not read (.nrrd, .mha, .mhd, .mgz, ...) are reported as UnreadableFile.
* Parsable DICOM that is not CT: non-image objects (DICOMDIR, RT structure sets / plans,
  structured reports: no Rows element) are ignored; image series of another modality
  (MR, CR, SEG, ...) are reported as one NotCT error per series.
"""

from __future__ import annotations

import dataclasses
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pydicom

from drrkit.ct.dicom import DICOM_PARSE_ERRORS, read_dicom_series, series_folder, series_id
from drrkit.ct.errors import CTReadError, HeaderConflict, NotCT, UnreadableFile
from drrkit.ct.nifti import is_nifti_path, nifti_stem, read_nifti, safe_id
from drrkit.ct.overrides import HeaderOverride
from drrkit.ct.scan import map_folders, scan_files
from drrkit.ct.volume import CTVolume

SKIP_EXTENSIONS = frozenset(
    {".txt", ".csv", ".tsv", ".json", ".md", ".rst", ".png", ".jpg", ".jpeg", ".yaml", ".yml",
     ".gif", ".bmp", ".tif", ".tiff", ".pdf", ".html", ".xml", ".log", ".py", ".ipynb"}
)
DICOM_EXTENSIONS = frozenset({".dcm", ".dicom", ".ima", ""})
UNSUPPORTED_VOLUME_EXTENSIONS = frozenset({".nrrd", ".nhdr", ".mha", ".mhd", ".mgz", ".hdr", ".npy", ".npz"})
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
# CT Image, Enhanced CT Image, Legacy Converted Enhanced CT Image Storage.
CT_SOP_CLASSES = frozenset(
    {"1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2"}
)
LABELS_DIR = "labels"
ZARR_METADATA = "zarr.json"  # a folder holding it is a Zarr store or group: skipped with all it holds
_PROBE_TAGS = ["Modality", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID", "Rows"]
_TEXT_CONTROL = frozenset(b"\t\n\r\f\b")


@dataclass(frozen=True)
class CTSource:
    """One CT input found on disk: a NIfTI file or the files of one DICOM series."""

    id: str
    path: str
    kind: str  # "nifti" | "dicom"
    files: tuple[str, ...]
    labels: str | None = None  # label map on this CT's grid (see drrkit.ct.labels), if any
    override: HeaderOverride | None = None  # a manifest's header correction (drrkit/ct/overrides.py)
    copies: tuple[str, ...] = ()  # DICOM files left out: the same SOP instances as files in `files`


def _walk(root: Path) -> tuple[list[Path], list[CTReadError]]:
    """All files under root (sorted), skipping `labels`, hidden and Zarr-store directories and
    hidden files; symlinked directories are followed (each real directory once). A directory that
    cannot be listed is an UnreadableFile error, never a silent gap in the corpus."""
    found, errors, seen = [], [], set()

    def unreadable(exc: OSError) -> None:
        errors.append(UnreadableFile(exc.filename or root, f"cannot list this folder: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen or ZARR_METADATA in filenames:  # a link loop or repeat; a Zarr store (e.g. --out)
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if d.casefold() != LABELS_DIR and not d.startswith(".")
                             and not d.casefold().endswith(".zarr"))
        found.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    return found, errors


def _dicomish(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix in DICOM_EXTENSIONS or suffix[1:].isdigit()


def _looks_like_text(path: Path) -> bool:
    """True for a non-empty file whose first KiB is plain text (README, LICENSE, notes)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
    except OSError:
        return False
    return bool(head) and all(ch >= 0x20 or ch in _TEXT_CONTROL for ch in head)


def _probe(path: Path) -> pydicom.Dataset | None:
    """Header of a DICOM file, None for a file that is clearly not DICOM; raises UnreadableFile.

    A file with a DICOM-ish name that does not parse is an error, unless it has no extension
    and is plain text (README, LICENSE).
    """
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, force=False, specific_tags=_PROBE_TAGS)
    except DICOM_PARSE_ERRORS as exc:
        if _dicomish(path) and not (path.suffix == "" and _looks_like_text(path)):
            raise UnreadableFile(path, f"not a readable DICOM file ({type(exc).__name__}: {exc})") from exc
        return None


def _classify_dicom(path: Path, ds: pydicom.Dataset) -> str | None:
    """'ct', 'other' (a non-CT image) or None (ignore: DICOMDIR / non-image object)."""
    meta = getattr(ds, "file_meta", None)
    sop = str((meta.get("MediaStorageSOPClassUID") if meta is not None else None) or ds.get("SOPClassUID") or "")
    modality = str(ds.get("Modality") or "").strip().upper()
    if sop == DICOMDIR_SOP_CLASS:
        return None
    if modality == "CT" or sop in CT_SOP_CLASSES:
        return "ct"
    if not modality and not sop:
        raise UnreadableFile(path, "DICOM file has neither Modality nor SOP Class UID (truncated?)")
    return "other" if ds.get("Rows") is not None else None


def classify_file(path: Path) -> tuple:
    """What discovery makes of one file: ("nifti",), ("dicom", class, series uid, modality, SOP
    instance uid) for a DICOM image ('ct' or 'other'), ("error", CTReadError) or ("skip",). Runs in scan processes
    (drrkit/ct/scan.py), so it reads only `path` and returns picklable values."""
    name = path.name.lower()
    if is_nifti_path(path):
        return ("nifti",)
    suffix = path.suffix.lower()
    if suffix in SKIP_EXTENSIONS or name == "dicomdir":
        return ("skip",)
    if suffix in UNSUPPORTED_VOLUME_EXTENSIONS:
        return ("error", UnreadableFile(path, f"unsupported image format {suffix!r}; convert to NIfTI or DICOM"))
    try:
        ds = _probe(path)
        cls = None if ds is None else _classify_dicom(path, ds)
    except UnreadableFile as err:
        return ("error", err)
    if cls is None:
        return ("skip",)
    uid = str(ds.get("SeriesInstanceUID") or "")
    if not uid:
        return ("error", UnreadableFile(path, "DICOM image has no SeriesInstanceUID"))
    return ("dicom", cls, uid, str(ds.get("Modality") or "?"), str(ds.get("SOPInstanceUID") or ""))


def _dicom_sources(groups: dict, errors: list[CTReadError]) -> list[CTSource]:
    sources = []
    for (cls, uid), members in groups.items():
        if cls == "other":
            files = sorted(p for p, _, _ in members)
            modalities = sorted({m for _, m, _ in members})
            reason = f"DICOM series {uid} ({len(files)} files) has Modality {modalities}, not CT"
            errors.append(NotCT(series_folder(files), reason))
            continue
        files, copies = _without_copies(members)
        folder = series_folder(files)
        sources.append(CTSource(series_id(folder, uid), str(folder), "dicom", tuple(str(f) for f in files),
                                copies=tuple(str(f) for f in copies)))
    return sources


def _without_copies(members: list[tuple]) -> tuple[list[Path], list[Path]]:
    """(files, copies) of one series: a file whose SOP Instance UID and size are those of a file
    earlier by path is a copy (the series copied into a second folder) and is left out, so the
    CT is read once instead of failing on duplicate slice positions. Same UID with another size
    is not taken for a copy: both stay, and the reader names them. Only files sharing a UID are
    stat'ed."""
    members = sorted(members)
    count: dict[str, int] = defaultdict(int)
    for _, _, sop in members:
        count[sop] += 1
    kept, copies, first = [], [], {}
    for path, _, sop in members:
        if sop and count[sop] > 1:
            size = _size(path)
            if size is not None and first.get(sop) == size:
                copies.append(path)
                continue
            first.setdefault(sop, size)
        kept.append(path)
    return kept, copies


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _unique_ids(sources: list[CTSource]) -> list[CTSource]:
    """Sort by (path, id, files); later duplicates of an id get _2, _3, ... (never reusing a taken id)."""
    sources = sorted(sources, key=lambda s: (s.path, s.id, s.files))
    taken = {s.id for s in sources}
    seen: set[str] = set()
    out = []
    for s in sources:
        new_id = s.id
        if new_id in seen:
            n = 2
            while f"{s.id}_{n}" in taken:
                n += 1
            new_id = f"{s.id}_{n}"
            taken.add(new_id)
        seen.add(new_id)
        out.append(dataclasses.replace(s, id=new_id) if new_id != s.id else s)
    return out


def discover_cts(root: str | Path, jobs: int | None = None) -> tuple[list[CTSource], list[CTReadError]]:
    """Find NIfTI files and DICOM CT series under `root` (recursively).

    Returns (sources sorted by path with unique ids, errors sorted by path). Never raises for a
    bad input file; raises UnreadableFile only if `root` itself does not exist. `jobs`: processes
    that read the file headers (None: automatic, drrkit/ct/scan.py); the result does not depend on it.
    Scan processes are spawned: a calling script needs an ``if __name__ == "__main__":``
    guard, and code in daemonic workers (Dask, DataLoader) passes jobs=1 (drrkit/processes.py).
    """
    root = Path(root)
    if not root.exists():
        raise UnreadableFile(root, "path does not exist")
    files, errors = ([root], []) if root.is_file() else _walk(root)
    groups: dict[tuple[str, str], list] = defaultdict(list)
    sources = []
    for path, outcome in zip(files, scan_files(files, classify_file, jobs)):
        if outcome[0] == "nifti":
            sources.append(CTSource(safe_id(nifti_stem(path)), str(path), "nifti", (str(path),)))
        elif outcome[0] == "dicom":
            _, cls, uid, modality, sop = outcome
            groups[(cls, uid)].append((path, modality, sop))
        elif outcome[0] == "error":
            errors.append(outcome[1])
    sources.extend(_dicom_sources(groups, errors))
    errors.sort(key=lambda e: (e.path, e.reason))
    return _unique_ids(sources), errors


def discover_folders(folders: list[Path], jobs: int | None = None) -> list[tuple]:
    """`discover_cts(folder)` for each folder, in order (a manifest's DICOM rows), the folders
    shared out to processes when there are many (drrkit/ct/scan.py). `jobs`: None = automatic."""
    return map_folders(folders, _discover_in_this_process, jobs)


def _discover_in_this_process(folder: Path) -> tuple:
    return discover_cts(folder, jobs=1)


def load_ct(source: CTSource) -> CTVolume:
    """Read a discovered source; the returned volume carries the source's (unique) id."""
    if source.kind == "nifti":
        vol = read_nifti(source.files[0], source.override)
    elif source.override is not None:
        raise HeaderConflict(source.path, "manifest header corrections (rescale_slope, rescale_intercept, "
                                          "spacing) apply to NIfTI files; a DICOM series is read from its own tags")
    elif source.kind == "dicom":
        vol = read_dicom_series([Path(f) for f in source.files])
    else:
        raise CTReadError(source.path, f"unknown source kind {source.kind!r}")
    return vol if vol.id == source.id else vol.with_id(source.id)


def load_recorded_ct(path: str | Path, ct_id: str, override: HeaderOverride | None = None) -> CTVolume:
    """The CT a store names in cts/source: a NIfTI file (read with the store's recorded header
    correction, if any), or under a folder the DICOM series with this id (the folder's only
    series otherwise)."""
    path = Path(path)
    if path.is_file():
        return read_nifti(path, override)
    # one CT's folder, read where the caller runs (maybe a daemonic Dask or DataLoader worker,
    # which may not start processes): scanned in this process
    sources, _ = discover_cts(path, jobs=1)
    match = [s for s in sources if s.id == ct_id] or sources
    if len(match) != 1:
        raise CTReadError(path, f"expected the DICOM series of CT {ct_id!r}, found {len(match)} series")
    return load_ct(dataclasses.replace(match[0], override=override))


def load_ct_path(path: str | Path) -> CTVolume:
    """Read a single .nii/.nii.gz file or a folder holding exactly one DICOM CT series."""
    path = Path(path)
    if not path.exists():
        raise UnreadableFile(path, "path does not exist")
    if path.is_file():
        if is_nifti_path(path):
            return read_nifti(path)
        raise UnreadableFile(path, "expected a .nii/.nii.gz file or a folder holding one DICOM series")
    sources, errors = discover_cts(path, jobs=1)  # one CT's folder: in this process, as above
    if errors:
        raise errors[0]
    if len(sources) != 1 or sources[0].kind != "dicom":
        found = [f"{s.kind}:{s.path}" for s in sources] or "nothing"
        raise CTReadError(path, f"expected exactly one DICOM CT series in this folder, found {found}")
    return load_ct(sources[0])
