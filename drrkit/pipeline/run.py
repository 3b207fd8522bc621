"""`drrkit render` as a library call: plan → store → one task per CT → report.

Tasks run in this process (one renderer, the default on a single device) or on a Dask cluster
(`cluster=ClusterSpec(...)`: local worker processes or an existing scheduler). Either way the
client alone records results in the store, in the order they complete.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from drrkit.ct.fingerprint import changed_since
from drrkit.geometry.recipe import Recipe
from drrkit.pipeline.bookkeeping import StatusLog
from drrkit.pipeline.cluster import ClusterSpec
from drrkit.pipeline.plan import plan_corpus
from drrkit.pipeline.removed import with_removed_failures
from drrkit.pipeline.report import RunReport, report_path
from drrkit.pipeline.task import CTResult, render_ct
from drrkit.render import device_wait
from drrkit.store import create_or_open
from drrkit.store.schema import DONE, PENDING


@dataclass(frozen=True)
class RenderJob:
    recipe: Recipe
    out: Path
    ct_dir: Path | None = None
    manifest: Path | None = None
    labels_dir: Path | None = None  # label maps for mask recipes: <dir>/<ct id>.nii.gz
    backend: str = "auto"
    device: str = "auto"
    batch_size: int | None = None
    image_dtype: str = "float32"
    overwrite: bool = False
    scan_jobs: int | None = None  # processes reading DICOM headers while planning (None: automatic)


@dataclass(frozen=True)
class DryRun:
    n_cts: int
    n_bad_inputs: int
    views_per_ct: int
    image_shape: tuple[int, int]
    uncompressed_bytes: int


def _check_views(job: RenderJob, plan) -> None:
    """A recipe whose source faces away from the volume is refused before a store is made (the
    first CT's poses: all of a grid recipe's; each CT's draws are checked again as it renders)."""
    if plan.entries:
        job.recipe.check_views(job.recipe.sample_poses(plan.entries[0].id), plan.entries[0].id)


def dry_run(job: RenderJob) -> DryRun:
    plan = plan_corpus(job.ct_dir, job.manifest, job.labels_dir, job.scan_jobs)
    _check_views(job, plan)
    det = job.recipe.detector
    views = job.recipe.views_per_ct()
    itemsize = np.dtype(job.image_dtype).itemsize
    return DryRun(len(plan.entries), len(plan.discovery_errors), views, (det.height, det.width),
                  len(plan.entries) * views * det.height * det.width * itemsize)


def render_corpus(job: RenderJob, on_result: Callable[[CTResult], None] | None = None,
                  on_start: Callable[[int, int], None] | None = None,
                  cluster: ClusterSpec | None = None, task: Callable | None = None) -> RunReport:
    """Render every planned CT into `job.out`; resume when the store already holds some of them."""
    t0, started = time.perf_counter(), time.time()
    device_wait.mode()  # a bad DRRKIT_CUDA_WAIT is refused here, not by every CT's render on CUDA
    startup = {}
    plan = plan_corpus(job.ct_dir, job.manifest, job.labels_dir, job.scan_jobs)
    if not job.overwrite:  # failed inputs deleted since the store was made keep their rows
        plan = with_removed_failures(job.out, plan)
    _check_views(job, plan)
    startup["plan"] = time.perf_counter() - t0
    renderer = None if cluster else _local_renderer(job)
    backend = renderer.describe() if renderer else {"backend": job.backend, "device": job.device}
    writer = create_or_open(job.out, job.recipe, plan.entries, image_dtype=job.image_dtype,
                            overwrite=job.overwrite, run_info={"renderer": backend}, extras=plan.extras)
    startup["store"] = time.perf_counter() - t0
    report = RunReport(str(job.out), job.recipe.name, backend, len(plan.entries), job.recipe.views_per_ct(),
                       started=started, startup_seconds=startup)
    statuses = writer.statuses()
    # a done CT whose source files changed since it was read is rendered again (ct/fingerprint.py)
    recorded, masks = writer.source_fingerprints(), job.recipe.masks is not None
    changed = [i for i in range(len(plan.entries)) if statuses[i] == DONE and plan.sources[i] is not None
               and changed_since(plan.sources[i], recorded[i], masks)]
    report.changed_sources = [plan.entries[i].id for i in changed]
    # done CTs whose input cannot be read now (deleted, moved): their rows stand, and the run says so
    report.missing_sources = {plan.entries[i].id: str(plan.discovery_errors.get(i, "not found"))
                              for i in range(len(plan.entries)) if statuses[i] == DONE and plan.sources[i] is None}
    # pending while their rows are rewritten: no reader, and no later resume, takes them as done
    writer.set_statuses([(i, PENDING, "", "") for i in changed])
    redo = set(changed)
    todo = [i for i in range(len(plan.entries)) if statuses[i] != DONE or i in redo]
    report.skipped_done = len(plan.entries) - len(todo)
    if on_start:
        on_start(len(todo), report.skipped_done)

    log = StatusLog(writer)

    def accept(result: CTResult) -> None:
        log.add(result)
        report.results.append(result)
        if on_result:
            on_result(result)

    ends = {}

    def mark(step: str) -> None:  # start-up steps, then the end of the last task
        (ends if step == "tasks_done" else startup).setdefault(step, time.perf_counter() - t0)

    failed_early = [i for i in todo if plan.sources[i] is None]
    runnable = [i for i in todo if plan.sources[i] is not None]
    try:
        for index in failed_early:
            err = plan.discovery_errors[index]
            accept(CTResult(index, plan.entries[index].id, "failed", err.kind, str(err)))
        if cluster:
            kwargs = {"task": task} if task else {}
            from drrkit.pipeline.dask_runner import run_on_cluster
            from drrkit.pipeline.worker import built_renderers

            report.cluster = run_on_cluster(runnable, plan, job, cluster, accept, on_ready=mark, **kwargs)
            # only renderers the workers built: a "none"/"pending" one never replaces the record
            report.backend = resolved_renderer(built_renderers(report.cluster["renderers"]), backend)
            writer.resolve_renderer(backend, report.backend)
        else:
            for index in runnable:
                accept(render_ct(index, plan.sources[index], job.recipe, renderer, writer))
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        log.flush()
    report.mixed_renderers = _mixed_renderers(writer)
    report.wall_seconds = time.perf_counter() - t0
    if "tasks_done" in ends:  # the cluster's descriptions and its closing, after the last CT
        report.shutdown_seconds = report.wall_seconds - ends["tasks_done"]
    if renderer is not None:
        report.peak_memory_bytes = _peak(renderer.device)
    report.write(report_path(job.out))
    return report


def _mixed_renderers(writer) -> list[dict]:
    """The renderers of the store's done CTs with their counts, when there is more than one."""
    counts: dict[str, int] = {}
    for status, renderer in zip(writer.statuses(), writer.renderers()):
        if status == DONE and renderer:
            counts[renderer] = counts.get(renderer, 0) + 1
    if len(counts) < 2:
        return []
    return [{"renderer": json.loads(r), "cts": n} for r, n in sorted(counts.items(), key=lambda kv: -kv[1])]


def resolved_renderer(per_worker: dict, asked: dict) -> dict:
    """The workers' renderer description: the one they share, or each worker's when they differ
    (an existing cluster may mix CPU and GPU workers); what was asked if no worker answered."""
    distinct = {json.dumps(d, sort_keys=True) for d in per_worker.values()}
    if not distinct:
        return asked
    if len(distinct) == 1:
        return next(iter(per_worker.values()))
    return {"backend": "mixed", "workers": per_worker}


def _local_renderer(job: RenderJob):
    from drrkit.render import make_renderer

    return make_renderer(job.recipe, job.backend, job.device, job.batch_size)


def _peak(device: str) -> int | None:
    from drrkit.render.memory import peak_bytes

    return peak_bytes(device)
