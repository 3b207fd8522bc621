"""Resuming a store after failed inputs were removed from the corpus.

A CT that failed (a truncated file, a non-CT series) is often deleted or moved away once its
reason is read. The store's rows are laid out by CT, so the re-run's plan would then lack a row
the store holds, and the resume was refused ("missing here"), leaving `--overwrite`, a full
re-render, as the only way on. Here the plan gets those rows back, as the failures the store
records. Only removals of CTs that failed in the store are taken back this way; any other
difference (a done or pending CT gone, a new CT, another file, another order) is still refused
by the store's identity check.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from drrkit.ct.errors import CTReadError
from drrkit.pipeline.plan import Plan
from drrkit.store import CTEntry, StoreError, open_corpus, schema
from drrkit.store.mismatch import same_source
from drrkit.store.writer import extra_array_name


def with_removed_failures(out: str | Path, plan: Plan) -> Plan:
    """`plan` with the store's failed CTs whose inputs are gone put back in their rows (as failed,
    with the store's reason), when that is the only difference; otherwise `plan` unchanged."""
    try:
        corpus = open_corpus(out)
    except StoreError:  # no store yet, or not one: create_or_open decides
        return plan
    if corpus.n_cts <= len(plan.entries):
        return plan
    stored = corpus.ct_table()
    removed = _removed_rows(stored, plan.entries)
    if removed is None:
        return plan
    return _restored(plan, stored, corpus.extra_columns(), removed)


def _removed_rows(stored: list[dict], entries: list[CTEntry]) -> list[int] | None:
    """Indices of the stored rows missing from `entries`, when `entries` is the stored list, in
    order, less only CTs that failed in the store; else None."""
    removed, k = [], 0
    for i, row in enumerate(stored):
        if k < len(entries) and entries[k].id == row["id"] and same_source(row["source"], entries[k].source):
            k += 1
        elif row["status"] == schema.FAILED:
            removed.append(i)
        else:
            return None
    return removed if k == len(entries) and removed else None


def _restored(plan: Plan, stored: list[dict], stored_extras: dict[str, list[str]], removed: list[int]) -> Plan:
    gone = set(removed)
    planned = iter(range(len(plan.entries)))
    plan_index = {i: next(planned) for i in range(len(stored)) if i not in gone}  # store row → plan row
    sources, entries, errors = [], [], {}
    for i, row in enumerate(stored):
        if i in gone:
            sources.append(None)
            entries.append(CTEntry(id=row["id"], source=row["source"], kind=row["kind"]))
            errors[i] = _kept_failure(row)
        else:
            j = plan_index[i]
            sources.append(plan.sources[j])
            entries.append(plan.entries[j])
            if j in plan.discovery_errors:
                errors[i] = plan.discovery_errors[j]
    extras = {col: [stored_extras.get(extra_array_name(col), [""] * len(stored))[i] if i in gone
                    else values[plan_index[i]] for i in range(len(stored))]
              for col, values in plan.extras.items()}
    return replace(plan, sources=sources, entries=entries, discovery_errors=errors, extras=extras)


def _kept_failure(row: dict) -> CTReadError:
    """The store's failure of a CT whose input is gone, under its recorded kind."""
    reason = row["error"].removeprefix(f"{row['source']}: ")
    if "(its input is gone since" not in reason:
        reason += " (its input is gone since; the store keeps the failure)"
    err = CTReadError(row["source"], reason)
    err.kind = row["error_kind"] or CTReadError.kind
    return err
