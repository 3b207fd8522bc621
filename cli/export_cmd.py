"""`drrkit export STORE --format png|dicom --out DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("export")(export)


def export(
    store: Path = typer.Argument(..., help="A corpus store written by `drrkit render`."),
    out: Path = typer.Option(..., "--out", help="Folder for the files and index.csv."),
    fmt: str = typer.Option("png", "--format", help="png (16-bit) | dicom (DX)"),
    ct: Optional[List[str]] = typer.Option(None, "--ct", help="Only these CT ids (repeatable)."),
    masks: Optional[bool] = typer.Option(None, "--masks/--no-masks", help="Structure masks (masks/*.png) and "
                                         "COCO annotations.json with boxes; default: when the store has masks."),
) -> None:
    """Write a store's images as 16-bit PNG or DICOM DX files (raw values recoverable)."""
    from cli.app import console, usage_error
    from drrkit.store import StoreError, open_corpus
    from drrkit.store.export import export_store

    try:
        done = export_store(open_corpus(store), out, fmt, ct, masks=masks)
    except (StoreError, ValueError) as exc:
        usage_error(str(exc))
    console.print(f"wrote {done.images} {fmt} file(s) and index.csv to {out}")
    if done.annotations is not None:
        console.print(f"wrote {done.mask_files} mask PNG(s) to {out / 'masks'} and COCO boxes and masks to "
                      f"{done.annotations}")
