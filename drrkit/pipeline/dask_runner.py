"""The client loop over a Dask cluster: submit CT tasks in a bounded window, record each result
in the store as it completes (the client is the only writer of the per-CT table)."""

from __future__ import annotations

import hashlib
from typing import Callable, Iterable

from drrkit.pipeline.allocator import malloc_environ
from drrkit.pipeline.cluster import ClusterSpec, close_client, start_client
from drrkit.pipeline.task import CTResult
from drrkit.pipeline.worker import (PLUGIN_NAME, RendererSetupFailed, RenderPlugin, describe_renderer,
                                    render_ct_task, renderer_setup_seconds)


def run_on_cluster(todo: Iterable[int], plan, job, spec: ClusterSpec, accept: Callable[[CTResult], None],
                   task: Callable = render_ct_task, on_ready: Callable[[str], None] = lambda step: None) -> dict:
    """Render CTs `todo` on the cluster; `accept` is called in the client for every result.
    Returns a description of the cluster used. `task` is replaceable for fault-injection tests;
    `on_ready` hears "cluster" once the client is connected, "plugin" once every worker has its
    state (tasks are submitted from then on, renderers still building) and "tasks_done" once
    every CT's result is in."""
    from distributed import as_completed

    plugin_name = f"{PLUGIN_NAME}-{hashlib.sha1(str(job.out).encode()).hexdigest()[:8]}"
    client = start_client(spec)
    on_ready("cluster")
    futures: dict = {}
    try:
        # returns once every worker has the plugin; their renderers build in the background while
        # the first CTs decode (worker.py)
        client.register_plugin(RenderPlugin(job.recipe, job.backend, job.device, job.batch_size, str(job.out),
                                            name=plugin_name), name=plugin_name)
        on_ready("plugin")
        info = client.scheduler_info()
        threads = sum(w["nthreads"] for w in info["workers"].values()) or 1
        queue = list(todo)
        window = max(4, 2 * threads)  # enough to keep every thread busy, bounded for 50k-CT corpora
        done_stream = as_completed(loop=client.loop)

        def submit(index: int, tag: str = "") -> None:
            future = client.submit(task, index, plan.sources[index], plugin_name, pure=False,
                                   key=f"drrkit-ct-{index}{tag}-{plugin_name}")
            futures[future.key] = (index, future)
            done_stream.add(future)

        suspects = []
        for _ in range(min(window, len(queue))):
            submit(queue.pop(0))
        for future in done_stream:
            index, _ = futures.pop(future.key)
            result = _result_of(future, index, plan, spec)
            if result.error_kind == "killed_worker":
                suspects.append(index)  # maybe only a neighbour of the CT that killed the worker
            else:
                accept(result)
            if queue:
                submit(queue.pop(0))
        for index in suspects:
            # Alone on the cluster, with a fresh retry budget: only a CT that itself kills its
            # worker fails again; innocent co-tenants of a dying worker complete.
            submit(index, tag="-alone")
            future = next(iter(done_stream))
            futures.pop(future.key)
            accept(_result_of(future, index, plan, spec))
        on_ready("tasks_done")
        # what each worker resolved auto/auto to, its build time and malloc settings (allocator.py);
        # a worker that dies now is left out, it does not fail a finished run
        renderers = _ask(client, describe_renderer, plugin_name)
        setup = _ask(client, renderer_setup_seconds, plugin_name)
        malloc = _ask(client, malloc_environ)
        return {"scheduler": spec.scheduler or "local", "address": info["address"],
                "workers": len(info["workers"]), "threads": threads,
                "isolated_retries": len(suspects), "renderers": renderers, "malloc_environ": malloc,
                "renderer_setup_seconds": setup}
    except (KeyboardInterrupt, RendererSetupFailed):
        client.cancel([f for _, f in futures.values()])  # their CTs stay pending for the re-run
        raise
    finally:
        try:
            client.unregister_worker_plugin(plugin_name)  # an existing cluster keeps no state of this run
        except Exception:  # noqa: BLE001 - a cluster going down takes the plugin with it
            pass
        close_client(client)


def _ask(client, function, *args) -> dict:
    """`Client.run` on every worker, keeping only the workers that answered."""
    answers = client.run(function, *args, on_error="return")
    return {w: a for w, a in answers.items() if not isinstance(a, BaseException)}


def _result_of(future, index: int, plan, spec: ClusterSpec) -> CTResult:
    from distributed.scheduler import KilledWorker

    source = plan.sources[index]
    try:
        return future.result()
    except RendererSetupFailed:  # a set-up problem of the run, not of this CT: the client stops
        raise
    except KilledWorker:
        return CTResult(index, source.id, "failed", "killed_worker",
                        f"{source.path}: the worker rendering this CT died {spec.retries + 1} times "
                        f"(out of memory or killed); not retried further")
    except Exception as exc:  # any other task failure is recorded against its CT, never dropped
        return CTResult(index, source.id, "failed", f"task_error:{type(exc).__name__}", f"{source.path}: {exc}")
