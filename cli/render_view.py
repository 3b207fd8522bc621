"""Rich presentation for `drrkit render`: progress bar, dry-run and end-of-run summaries."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from cli.app import console, err_console
from drrkit.render.timing import KEY_PREFIX

HINT_MIN_CTS = 8  # CTs rendered in-process on CUDA above which --workers auto is suggested


def print_dry_run(job, plan) -> None:
    table = Table(title=f"dry run: {job.out}", show_header=False)
    table.add_row("recipe", job.recipe.name)
    table.add_row("CTs found", str(plan.n_cts))
    table.add_row("of which unreadable at discovery", str(plan.n_bad_inputs))
    table.add_row("views per CT", str(plan.views_per_ct))
    table.add_row("images", f"{plan.n_cts * plan.views_per_ct} × {plan.image_shape[0]}×{plan.image_shape[1]} {job.image_dtype}")
    table.add_row("uncompressed size", f"{plan.uncompressed_bytes / 2**20:,.1f} MiB")
    console.print(table)


def run_with_progress(job, cluster=None) -> int:
    from drrkit.pipeline import render_corpus

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("views {task.fields[views]}"), TextColumn("{task.fields[rate]}"),
               TextColumn("[red]{task.fields[failed]}"), TimeElapsedColumn(), TimeRemainingColumn())
    state = {"views": 0, "failed": 0, "render_s": 0.0}
    with Progress(*columns, console=console, transient=False) as progress:
        # discovery of a large DICOM corpus takes minutes: say so, and start the clock (views/s,
        # ETA) only when the CTs are queued
        task = progress.add_task("planning", total=None, views=0, rate="", failed="")

        def on_start(todo: int, skipped: int) -> None:
            progress.reset(task, total=todo, description="CTs")
            if skipped:
                progress.console.print(f"resuming: {skipped} CT(s) already done in {job.out}")

        def on_result(result) -> None:
            state["views"] += result.views
            state["failed"] += result.status != "done"
            elapsed = progress.tasks[task].elapsed or 0.0
            rate = f"{state['views'] / elapsed:.2f} views/s" if elapsed else ""
            failed = f"{state['failed']} failed" if state["failed"] else ""
            progress.update(task, advance=1, views=state["views"], rate=rate, failed=failed)

        try:
            report = render_corpus(job, on_result=on_result, on_start=on_start, cluster=cluster)
        except BaseException:
            if progress.tasks[task].total is None:  # refused before any CT was queued: no empty bar
                progress.update(task, visible=False)
            raise
    print_summary(report)
    return report.exit_code


def phase_split(phases: dict[str, float]) -> str:
    """'load 1.0s, render 2.0s (wait 0.1s, upload 0.2s, ...), write 0.3s': render's parts
    (render_* timings, drrkit/render/timing.py) in brackets after it."""
    parts = {k.removeprefix(KEY_PREFIX): v for k, v in phases.items() if k.startswith(KEY_PREFIX)}
    out = []
    for name, secs in phases.items():
        if name.startswith(KEY_PREFIX):
            continue
        inner = ", ".join(f"{k} {v:.1f}s" for k, v in parts.items()) if name == "render" and parts else ""
        out.append(f"{name} {secs:.1f}s" + (f" ({inner})" if inner else ""))
    return ", ".join(out)


def print_summary(report) -> None:
    split = phase_split(report.phase_seconds()) or "nothing rendered"
    done = len(report.results) - len(report.failed)
    steady = report.steady_views_per_second()
    rate = (f", {steady:.1f} views/s after the first CT (done {report.first_ct_after_seconds():.1f}s into the run)"
            if steady else "")
    console.print(f"[bold green]{done}[/] CT(s) rendered, {report.views_rendered} views in "
                  f"{report.wall_seconds:.1f}s{rate} (summed over CTs: {split}); {report.skipped_done} "
                  f"already done; backend {report.backend['backend']} on {report.backend['device']}")
    if report.changed_sources:
        shown = ", ".join(report.changed_sources[:5]) + (", ..." if len(report.changed_sources) > 5 else "")
        console.print(f"[yellow]{len(report.changed_sources)} CT(s) done before were rendered again[/]: their "
                      f"source files changed since they were read ({shown}; all in the run report)",
                      highlight=False)
    if report.mixed_renderers:
        kinds = "; ".join(f"{m['cts']} by {_renderer_words(m['renderer'])}" for m in report.mixed_renderers)
        console.print(f"[yellow]the store's done CTs were rendered by {len(report.mixed_renderers)} renderers[/]: "
                      f"{kinds} (per CT: cts/renderer)", highlight=False)
    if report.missing_sources:
        gone = list(report.missing_sources)
        shown = ", ".join(gone[:5]) + (", ..." if len(gone) > 5 else "")
        console.print(f"[yellow]{len(gone)} CT(s) done before have no readable input now[/]: their rows are "
                      f"kept as rendered then ({shown}; reasons in the run report)", highlight=False)
    if report.peak_memory_bytes:
        console.print(f"peak device memory {report.peak_memory_bytes / 2**30:.2f} GiB")
    if report.cluster:
        steps = report.startup_seconds
        ready = (f"; CTs submitted {steps['plugin']:.1f}s into the run (cluster up at {steps['cluster']:.1f}s)"
                 if "plugin" in steps else "")
        if report.shutdown_seconds is not None:
            ready += f", closed {report.shutdown_seconds:.1f}s after the last CT"
        console.print(f"dask: {report.cluster['workers']} worker(s), {report.cluster['threads']} thread(s), "
                      f"scheduler {report.cluster['scheduler']}{ready}")
    on_cuda = str(report.backend.get("device", "")).startswith("cuda")
    if report.cluster is None and on_cuda and len(report.results) >= HINT_MIN_CTS:
        # one process decodes one CT at a time while the GPU mostly waits (README, Scaling out)
        console.print("hint: [bold]--workers auto[/] decodes CTs in several processes to keep the GPU fed")
    console.print(f"store: {report.store}")
    if report.interrupted:
        err_console.print("[yellow]interrupted[/]: finished CTs are recorded; run the same command again to resume")
    warned = [r for r in report.results if r.info and r.info.get("warnings")]
    if warned:
        err_console.print(f"[yellow]{len(warned)} CT(s) rendered with warnings[/] (also in the run report):")
        for r in warned:
            for line in r.info["warnings"]:
                err_console.print(f"  {r.ct_id}: {line}", markup=False, soft_wrap=True, highlight=False)
    if report.failed:
        err_console.print(f"[bold red]{len(report.failed)} input(s) failed[/] (recorded in the store with their reasons):")
        for r in report.failed:
            # One unwrapped line per failure, without markup: paths and messages must survive intact.
            err_console.print(f"  {r.ct_id}: [{r.error_kind}] {r.error.splitlines()[0]}", markup=False,
                              soft_wrap=True, highlight=False)


def _renderer_words(desc: dict) -> str:
    """A renderer description in a few words: backend, engine where there is one, device."""
    parts = [desc.get("backend", "?"), desc.get("engine") or desc.get("diffdrr_renderer"), desc.get("device")]
    return "/".join(str(p) for p in parts if p)
