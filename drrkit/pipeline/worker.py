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
# How long the end-of-run description waits for a renderer still being built (a worker that got
# no CT, or a replacement): off the worker's event loop, then said to be pending.
DESCRIBE_TIMEOUT_S = 60


class RendererSetupFailed(RuntimeError):
    """A worker could not build its renderer: a set-up problem (device, backend), not a bad CT.
    The task raises it instead of recording its CT as failed, and the client stops the run."""


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
        except BaseException as exc:  # kept: the task that meets it stops the run, naming it
            self.error = exc
        finally:
            self.setup_seconds = time.perf_counter() - t0
            self._built.set()

    def start(self, *args) -> None:
        threading.Thread(target=self.build, args=args, name="drrkit-renderer-setup", daemon=True).start()

    @property
    def built(self) -> bool:
        return self._built.is_set()

    def wait_built(self, timeout: float | None = None) -> bool:
        """Whether the build ended (built or failed) within `timeout` seconds."""
        return self._built.wait(timeout)

    def failure(self) -> RendererSetupFailed | None:
        """The build's failure, once known, as the error that stops the run."""
        if self.built and self.inner is None:
            cause = self.error
            reason = f"{type(cause).__name__}: {cause}" if cause is not None else "no renderer was made"
            return RendererSetupFailed(f"could not build its renderer: {reason}")
        return None

    def ready(self, timeout: float | None = None):
        """The built renderer, once it is built; RendererSetupFailed if it could not be."""
        if not self.wait_built(timeout):
            raise RendererSetupFailed(f"the renderer was not built within {timeout:.0f} s")
        failed = self.failure()
        if failed is not None:
            raise failed from self.error
        return self.inner

    def describe(self) -> dict:
        return self.ready().describe()

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
    """Per-worker state of one run, under the run's plugin name (runs into different stores on
    one existing cluster keep theirs apart); removed when the client unregisters it."""

    def __init__(self, recipe: Recipe, backend: str, device: str, batch_size: int | None, store: str,
                 name: str = PLUGIN_NAME):
        self.recipe, self.backend, self.device = recipe, backend, device
        self.batch_size, self.store, self.name = batch_size, store, name

    def setup(self, worker) -> None:
        from drrkit.store import CorpusWriter

        renderer = _WorkerRenderer()
        runs = getattr(worker, "drrkit", None)
        if not isinstance(runs, dict):
            runs = worker.drrkit = {}
        runs[self.name] = {"renderer": renderer, "writer": CorpusWriter(self.store), "recipe": self.recipe}
        renderer.start(self.recipe, self.backend, self.device, self.batch_size)

    def teardown(self, worker) -> None:
        getattr(worker, "drrkit", {}).pop(self.name, None)


def _state(dask_worker, plugin_name: str) -> dict | None:
    return (getattr(dask_worker, "drrkit", None) or {}).get(plugin_name)


def render_ct_task(ct_index: int, source: CTSource, plugin_name: str = PLUGIN_NAME) -> CTResult:
    """The Dask task: one CT on this worker's renderer and store handle. A renderer that could
    not be built stops the run (RendererSetupFailed), before decoding when that is known already;
    the CT is not recorded as failed, it stays pending for the re-run."""
    worker = get_worker()
    state = _state(worker, plugin_name)
    if state is None:
        raise RendererSetupFailed(f"worker {worker.name}: the run's plugin {plugin_name} is not set up here")
    renderer = state["renderer"]
    _stop_if_failed(worker, renderer)
    result = render_ct(ct_index, source, state["recipe"], renderer, state["writer"])
    _stop_if_failed(worker, renderer)  # the build failed while this CT decoded: not the CT's fault
    result.worker = worker.name
    return result


def _stop_if_failed(worker, renderer: _WorkerRenderer) -> None:
    failed = renderer.failure()
    if failed is not None:
        raise RendererSetupFailed(f"worker {worker.name}: {failed}") from renderer.error


async def describe_renderer(plugin_name: str = PLUGIN_NAME, dask_worker=None) -> dict:
    """The renderer this worker built (backend, engine, device), as recorded in the store; run
    through `Client.run` (which passes `dask_worker`). The wait for a build still in progress
    runs off the worker's event loop, at most DESCRIBE_TIMEOUT_S. A worker without one says
    why, under backend "none" or "pending"; those never replace the store's record."""
    import asyncio

    state = _state(dask_worker, plugin_name)
    if state is None:
        return {"backend": "none", "error": "the renderer was not built on this worker (plugin setup failed)"}
    renderer = state["renderer"]
    built = await asyncio.get_running_loop().run_in_executor(None, renderer.wait_built, DESCRIBE_TIMEOUT_S)
    if not built:
        return {"backend": "pending", "error": f"the renderer was still being built after {DESCRIBE_TIMEOUT_S} s"}
    failed = renderer.failure()
    if failed is not None:
        return {"backend": "none", "error": str(failed)}
    return renderer.inner.describe()


def renderer_setup_seconds(plugin_name: str = PLUGIN_NAME, dask_worker=None) -> float | None:
    """Seconds this worker took to import torch and build its renderer (CUDA context included),
    in the background while its first CTs decoded; None where it failed or is still building.
    Run through `Client.run` once the run's tasks are done."""
    state = _state(dask_worker, plugin_name)
    if state is None or not state["renderer"].built or state["renderer"].failure() is not None:
        return None
    return state["renderer"].setup_seconds


def built_renderers(descriptions: dict) -> dict:
    """The workers' descriptions of renderers they actually built (not "none"/"pending")."""
    return {w: d for w, d in descriptions.items() if d.get("backend") not in ("none", "pending")}
