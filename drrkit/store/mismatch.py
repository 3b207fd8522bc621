"""What differs between a store's identity and a run's: the lines of a StoreMismatch message.

A refusal to resume is only useful if it says what changed: `--height 128` against a store made at
256, another recipe, a folder with CTs added. Values are compared as stored (JSON), so the
message shows what the store holds against what this run asked for.
"""

from __future__ import annotations

import os

MAX_LINES = 6  # differences named; the rest are counted


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def value_differences(stored, wanted, prefix: str = "") -> list[str]:
    """'key.path: stored → wanted' for every leaf that differs (dicts compared key by key)."""
    if isinstance(stored, dict) and isinstance(wanted, dict):
        out = []
        for key in sorted(set(stored) | set(wanted), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in stored:
                out.append(f"{name}: absent → {_short(wanted[key])}")
            elif key not in wanted:
                out.append(f"{name}: {_short(stored[key])} → absent")
            else:
                out.extend(value_differences(stored[key], wanted[key], name))
        return out
    return [] if stored == wanted else [f"{prefix}: {_short(stored)} → {_short(wanted)}"]


def same_source(a: str, b: str) -> bool:
    # stores made before sources were absolute hold them as typed, relative to the run's directory
    return a == b or os.path.abspath(a) == os.path.abspath(b)


def ct_list_differences(stored: list | None, wanted: list) -> list[str]:
    """CTs (id, source) the store holds and this run lacks, and the reverse; else the first
    position where the order differs."""
    if stored is None:
        return ["the store records no CT list"]
    stored_ids = {ct_id: src for ct_id, src in stored}
    wanted_ids = {ct_id: src for ct_id, src in wanted}
    added = [i for i in wanted_ids if i not in stored_ids]
    removed = [i for i in stored_ids if i not in wanted_ids]
    moved = [i for i in wanted_ids if i in stored_ids and not same_source(stored_ids[i], wanted_ids[i])]
    out = [f"{len(stored)} CTs in the store, {len(wanted)} found now"]
    for label, ids in (("new here", added), ("missing here", removed), ("another file", moved)):
        if ids:
            shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
            out.append(f"{label}: {shown}")
    if len(out) == 1:  # same CTs, another order
        pos = next((k for k, (a, b) in enumerate(zip(stored, wanted)) if a[0] != b[0]), None)
        if pos is not None:
            out.append(f"same CTs in another order (position {pos}: {stored[pos][0]} → {wanted[pos][0]})")
    return out


def differences(key: str, stored, wanted) -> list[str]:
    """The lines naming how `stored` (the store's identity[key]) differs from `wanted`."""
    lines = ct_list_differences(stored, wanted) if key == "ct_list" else value_differences(stored, wanted, key)
    if len(lines) > MAX_LINES:
        lines = lines[:MAX_LINES] + [f"and {len(lines) - MAX_LINES} more differences"]
    return lines
