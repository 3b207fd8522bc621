"""What runs inside a Dask worker: per-worker state built once, and the per-CT task.

`RenderPlugin.setup` opens the store and starts building the worker's renderer in a background
thread (importing torch, starting the CUDA context), then returns at once: the client submits CT
tasks as soon as every worker has the plugin, and their CTs decode while the renderer is still
being built. A task waits for the renderer only when it has a CT to render (the `setup` render
phase, render/timing.py; first CTs of a worker only). Tasks receive a CT index and its source
(paths, no arrays) and return a `CTResult`.
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
# How long the end-of-run description waits for a renderer still being built (no task needed it).
DESCRIBE_TIMEOUT_S = 600


class RendererSetupFailed(RuntimeError):
    """This worker could not build its renderer; every CT it takes fails with the reason."""


class _WorkerRenderer:
    """The worker's one renderer: built once in a background thread, then shared by the task
    threads, which render one at a time (one kernel stream per device, bounded memory) while
    loading and writing of other CTs proceed in parallel."""

    def __init__(self):
        self.lock = threading.Lock()
        self._built = threading.Event()
        self.inner = None
        self.error: BaseException | None = None
        self.setup_seconds: float | None = None

    @classmethod
    def of(cls, renderer) -> "_WorkerRenderer":
        """Around a renderer built already (tests, in-process callers)."""
        made = cls()
        made.inner, made.setup_seconds = renderer, 0.0
        made._built.set()
        return made

    def build(self, recipe: Recipe, backend: str, device: str, batch_size: int | None) -> None:
        t0 = time.perf_counter()
        try:
            import torch

            from drrkit.render import device_wait, make_renderer

            threads = os.environ.get("DRRKIT_TORCH_THREADS")
            if threads:
                torch.set_num_threads(int(threads))
            device_wait.mode()  # this worker's DRRKIT_CUDA_WAIT, refused here if it is not block/spin
            renderer = make_renderer(recipe, backend, device, batch_size)
            _start_device(renderer.device)
            self.inner = renderer
        except Exception as exc:  # kept: each CT this worker takes fails naming it
            self.error = exc
        finally:
            self.setup_seconds = time.perf_counter() - t0
            self._built.set()

    def start(self, *args) -> None:
        threading.Thread(target=self.build, args=args, name="drrkit-renderer-setup", daemon=True).start()

    def ready(self, timeout: float | None = None):
        """The built renderer, once it is built; RendererSetupFailed if it could not be."""
        if not self._built.wait(timeout):
            raise RendererSetupFailed(f"the renderer was not built within {timeout:.0f} s")
        if self.error is not None:
            raise RendererSetupFailed(f"this worker could not build its renderer: "
                                      f"{type(self.error).__name__}: {self.error}") from self.error
        return self.inner

    def describe(self) -> dict:
        return self.ready(DESCRIBE_TIMEOUT_S).describe()

    def render(self, ct, poses, field=None):
        with phase("setup"):
            inner = self.ready()
        with phase("wait"):
            self.lock.acquire()
        try:
            batches = list(inner.render(ct, poses, field))
        finally:
            self.lock.release()
        yield from batches


def _start_device(device: str) -> None:
    """Create the CUDA context now, while the worker's first CTs decode, not at the first upload."""
    import torch

    if torch.device(device).type == "cuda":
        torch.empty(1, device=device)


class RenderPlugin(WorkerPlugin):
    def __init__(self, recipe: Recipe, backend: str, device: str, batch_size: int | None, store: str):
        self.recipe, self.backend, self.device = recipe, backend, device
        self.batch_size, self.store = batch_size, store

    def setup(self, worker) -> None:
        from drrkit.store import CorpusWriter

        renderer = _WorkerRenderer()
        worker.drrkit = {"renderer": renderer, "writer": CorpusWriter(self.store), "recipe": self.recipe}
        renderer.start(self.recipe, self.backend, self.device, self.batch_size)


def render_ct_task(ct_index: int, source: CTSource) -> CTResult:
    """The Dask task: one CT on this worker's renderer and store handle."""
    state = get_worker().drrkit
    result = render_ct(ct_index, source, state["recipe"], state["renderer"], state["writer"])
    result.worker = get_worker().name
    return result


def describe_renderer(dask_worker) -> dict:
    """The renderer this worker built (backend, engine, device), as recorded in the store.
    Run through `Client.run`, which passes the worker as `dask_worker`. A worker whose plugin
    setup or renderer build failed says so here (its tasks then fail and are recorded against
    their CTs)."""
    state = getattr(dask_worker, "drrkit", None)
    if state is None:
        return {"backend": "none", "error": "the renderer was not built on this worker (plugin setup failed)"}
    try:
        return state["renderer"].describe()
    except RendererSetupFailed as exc:
        return {"backend": "none", "error": str(exc)}


def renderer_setup_seconds(dask_worker) -> float | None:
    """Seconds this worker took to import torch and build its renderer (CUDA context included),
    in the background while its first CTs decoded; None where setup failed. Run through
    `Client.run` once the run's tasks are done."""
    state = getattr(dask_worker, "drrkit", None)
    if state is None or state["renderer"].error is not None:
        return None
    return state["renderer"].setup_seconds
