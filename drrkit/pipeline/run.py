"""`drrkit render` as a library call: plan → store → one task per CT → report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from drrkit.geometry.recipe import Recipe
from drrkit.pipeline.plan import Plan, plan_corpus
from drrkit.pipeline.report import RunReport, report_path
from drrkit.pipeline.task import CTResult, render_ct
from drrkit.render import make_renderer
from drrkit.render.memory import peak_bytes
from drrkit.store import create_or_open
from drrkit.store.schema import DONE


@dataclass(frozen=True)
class RenderJob:
    recipe: Recipe
    out: Path
    ct_dir: Path | None = None
    backend: str = "auto"
    device: str = "auto"
    batch_size: int | None = None
    image_dtype: str = "float32"
    overwrite: bool = False


@dataclass(frozen=True)
class DryRun:
    n_cts: int
    n_bad_inputs: int
    views_per_ct: int
    image_shape: tuple[int, int]
    uncompressed_bytes: int


def dry_run(job: RenderJob) -> DryRun:
    plan = plan_corpus(job.ct_dir)
    det = job.recipe.detector
    views = job.recipe.views_per_ct()
    itemsize = np.dtype(job.image_dtype).itemsize
    return DryRun(len(plan.entries), len(plan.discovery_errors), views, (det.height, det.width),
                  len(plan.entries) * views * det.height * det.width * itemsize)


Progress = Callable[[CTResult], None]


def render_corpus(job: RenderJob, on_result: Progress | None = None,
                  on_start: Callable[[int, int], None] | None = None) -> RunReport:
    """Render every planned CT into `job.out`; resume when the store already holds some of them."""
    t0 = time.perf_counter()
    plan = plan_corpus(job.ct_dir)
    renderer = make_renderer(job.recipe, job.backend, job.device, job.batch_size)
    writer = create_or_open(job.out, job.recipe, plan.entries, image_dtype=job.image_dtype,
                            overwrite=job.overwrite, run_info={"renderer": renderer.describe()})
    report = RunReport(str(job.out), job.recipe.name, renderer.describe(), len(plan.entries),
                       job.recipe.views_per_ct())
    statuses = writer.statuses()
    todo = [i for i in range(len(plan.entries)) if statuses[i] != DONE]
    report.skipped_done = len(plan.entries) - len(todo)
    if on_start:
        on_start(len(todo), report.skipped_done)
    for index in todo:
        result = _run_one(index, plan, job, renderer, writer)
        _record(writer, result)
        report.results.append(result)
        if on_result:
            on_result(result)
    report.wall_seconds = time.perf_counter() - t0
    report.peak_memory_bytes = peak_bytes(renderer.device)
    report.write(report_path(job.out))
    return report


def _run_one(index: int, plan: Plan, job: RenderJob, renderer, writer) -> CTResult:
    source = plan.sources[index]
    if source is None:
        err = plan.discovery_errors[index]
        return CTResult(index, plan.entries[index].id, "failed", err.kind, str(err))
    return render_ct(index, source, job.recipe, renderer, writer)


def _record(writer, result: CTResult) -> None:
    """Client-side bookkeeping: CT properties, then status, in that order."""
    if result.info:
        writer.record_ct(result.ct_index, result.info)
    if result.status == DONE:
        writer.mark_done(result.ct_index)
    else:
        writer.mark_failed(result.ct_index, result.error_kind, result.error)
