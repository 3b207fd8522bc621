"""`drrkit verify STORE [--rerender K] [--image-cts N] [--checksums] [--report out.json]`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)


def verify(
    store: Path = typer.Argument(..., help="A corpus store written by `drrkit render`."),
    rerender: int = typer.Option(4, "--rerender", help="Random stored views to render again with plain DiffDRR "
                                 "from the store's metadata (0: none)."),
    image_cts: Optional[int] = typer.Option(None, "--image-cts", help="Check the images (and boxes, sources) of "
                                            "this many random done CTs; default all."),
    checksums: bool = typer.Option(False, "--checksums", help="Read every checked CT's source again and match "
                                   "its checksum (one CT read each)."),
    device: str = typer.Option("cpu", "--device", help="Device for the DiffDRR re-renders."),
    seed: int = typer.Option(0, "--seed", help="Seed of the CT and view samples."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write the checks as JSON here."),
) -> None:
    """Check a store against its own metadata: layout, table, rows, poses, images, boxes,
    sources, and views re-rendered with plain DiffDRR. Exit 3 if a check fails."""
    from rich.table import Table

    from cli.app import console, usage_error
    from drrkit.store import StoreError, open_corpus
    from drrkit.store.verify import verify_store

    if rerender < 0 or (image_cts is not None and image_cts < 1):
        usage_error("--rerender must be >= 0 and --image-cts >= 1")
    try:
        result = verify_store(open_corpus(store), image_cts=image_cts, rerender=rerender, checksums=checksums,
                              device=device, seed=seed)
    except StoreError as exc:
        usage_error(str(exc))
    table = Table(title=f"verify {store}")
    for col in ("check", "result", "detail"):
        table.add_column(col)
    for check in result.checks:
        mark = {True: "[green]ok[/]", False: "[bold red]FAILED[/]", None: "[yellow]skipped[/]"}[check.ok]
        table.add_row(check.name, mark, check.detail)
    console.print(table)
    if report is not None:
        report.write_text(result.to_json())
        console.print(f"report: {report}")
    raise typer.Exit(0 if result.ok else 3)
