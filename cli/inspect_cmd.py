"""`drrkit inspect STORE [--preview out.png]`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect)


def inspect(
    store: Path = typer.Argument(..., help="A corpus store written by `drrkit render`."),
    preview: Optional[Path] = typer.Option(None, "--preview", help="Write a PNG contact sheet of a few views per CT."),
    max_cts: int = typer.Option(6, "--max-cts", help="CTs in the preview."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary (with the whole per-CT table) as JSON."),
) -> None:
    """Summarise a corpus store: recipe, geometry, intensity, per-CT status."""
    from cli.app import console, usage_error
    from drrkit.store import StoreError, open_corpus
    from drrkit.store.summary import summarize, write_preview

    try:
        corpus = open_corpus(store)
    except StoreError as exc:
        usage_error(str(exc))
    s = summarize(corpus)
    if as_json:
        import json

        typer.echo(json.dumps(s, indent=2))
    else:
        _print_tables(store, s)
    if preview is not None:
        try:
            written = write_preview(corpus, preview, max_cts=max_cts)
        except ValueError as exc:
            usage_error(str(exc))
        if not as_json:  # stdout stays one JSON document
            console.print(f"preview: {written}")


def _print_tables(store: Path, s: dict) -> None:
    from rich.table import Table

    from cli.app import console

    head = Table(title=str(store), show_header=False)
    det = s["detector"]
    rows = [("schema", f'v{s["schema_version"]} (drrkit {s["drrkit_version"]}, {s["created"]})'),
            ("recipe", s["recipe"]), ("views per CT", str(s["views_per_ct"])),
            ("images", f'{s["n_rows"]} × {det["height"]}×{det["width"]} {s["image_dtype"]}'),
            ("detector", f'sdd {det["sdd"]} mm, pixel {det["delx"]}×{det["dely"]} mm'),
            ("intensity", f'{s["intensity"]} ({s["intensity_units"]})'), ("poses", s["pose_convention"]),
            ("CT status", ", ".join(f"{k}: {v}" for k, v in sorted(s["status_counts"].items())))]
    if s["masks"] is not None:
        m = s["masks"]
        found = ", ".join(f"{ch} {k}/{m['rendered_cts']}" for ch, k in m["cts_with_structure"].items())
        rows.append(("masks", f"{len(m['channels'])} channels (path > {m['threshold_mm']} mm); "
                              f"CTs with the structure: {found}"))
    for key, value in rows:
        head.add_row(key, value)
    console.print(head)
    cts = Table(title="CTs")
    for col in ("id", "status", "shape", "spacing (mm)", "reason"):
        cts.add_column(col)
    for row in s["cts"]:
        shape = "×".join(str(v) for v in row["shape"]) if row["shape"][0] >= 0 else "-"
        spacing = "×".join(f"{v:.2f}" for v in row["spacing"]) if row["shape"][0] >= 0 else "-"
        cts.add_row(row["id"], row["status"], shape, spacing, row["error"].splitlines()[0] if row["error"] else "")
    console.print(cts)
