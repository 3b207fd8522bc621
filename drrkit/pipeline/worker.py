"""What runs inside a Dask worker: per-worker state built once, and the per-CT task.

`RenderPlugin.setup` builds the renderer (CUDA context, compiled kernels) and opens the store once
per worker; tasks receive a CT index and its source (paths, no arrays) and return a `CTResult`.
"""

from __future__ import annotations

import os
import threading
import time

from distributed import WorkerPlugin, get_worker

from drrkit.ct import CTSource
from drrkit.geometry.recipe import Recipe
from drrkit.pipeline.task import CTResult, render_ct
from drrkit.render.timing import phase

PLUGIN_NAME = "drrkit-render"


class _SerialRenderer:
    """Serialises `render` across a worker's task threads (one kernel stream per device, bounded
    memory) while loading and writing of other CTs proceed in parallel."""

    def __init__(self, renderer):
        self.inner = renderer
        self.lock = threading.Lock()
        self.name, self.device = renderer.name, renderer.device

    def describe(self) -> dict:
        return self.inner.describe()

    def render(self, ct, poses, field=None):
        with phase("wait"):
            self.lock.acquire()
        try:
            batches = list(self.inner.render(ct, poses, field))
        finally:
            self.lock.release()
        yield from batches


class RenderPlugin(WorkerPlugin):
    def __init__(self, recipe: Recipe, backend: str, device: str, batch_size: int | None, store: str):
        self.recipe, self.backend, self.device = recipe, backend, device
        self.batch_size, self.store = batch_size, store

    def setup(self, worker) -> None:
        t0 = time.perf_counter()
        import torch

        from drrkit.render import device_wait, make_renderer
        from drrkit.store import CorpusWriter

        threads = os.environ.get("DRRKIT_TORCH_THREADS")
        if threads:
            torch.set_num_threads(int(threads))
        device_wait.mode()  # this worker's DRRKIT_CUDA_WAIT, refused at setup if it is not block/spin
        renderer = make_renderer(self.recipe, self.backend, self.device, self.batch_size)
        worker.drrkit = {"renderer": _SerialRenderer(renderer), "writer": CorpusWriter(self.store),
                         "recipe": self.recipe, "setup_seconds": time.perf_counter() - t0}


def render_ct_task(ct_index: int, source: CTSource) -> CTResult:
    """The Dask task: one CT on this worker's renderer and store handle."""
    state = get_worker().drrkit
    result = render_ct(ct_index, source, state["recipe"], state["renderer"], state["writer"])
    result.worker = get_worker().name
    return result


def describe_renderer(dask_worker) -> dict:
    """The renderer this worker built (backend, engine, device), as recorded in the store.
    Run through `Client.run`, which passes the worker as `dask_worker`. A worker whose plugin
    setup failed says so here (its tasks then fail and are recorded against their CTs)."""
    state = getattr(dask_worker, "drrkit", None)
    if state is None:
        return {"backend": "none", "error": "the renderer was not built on this worker (plugin setup failed)"}
    return state["renderer"].describe()


def renderer_setup_seconds(dask_worker) -> float | None:
    """Seconds this worker's plugin took to import torch and build its renderer and store handle
    (CUDA context included); None where setup failed. Run through `Client.run`."""
    state = getattr(dask_worker, "drrkit", None)
    return None if state is None else state.get("setup_seconds")
