"""A worker's renderer builds in the background: CTs wait for it only to render; a build that
fails stops the run naming the worker and the reason, and leaves its CTs pending."""

import asyncio
import threading
import time
from types import SimpleNamespace

import pytest

import drrkit.render as render
import drrkit.store as store
from drrkit.geometry.recipe import Recipe
from drrkit.phantom import write_cohort
from drrkit.pipeline import ClusterSpec, RenderJob, render_corpus
from drrkit.pipeline.worker import (RendererSetupFailed, RenderPlugin, _WorkerRenderer, describe_renderer,
                                    renderer_setup_seconds)
from drrkit.render import timing
from drrkit.render.base import render_all
from drrkit.store import open_corpus

RECIPE = {"name": "t", "detector": {"sdd": 1020, "height": 12, "width": 12, "delx": 30.0, "dely": 30.0},
          "poses": {"sampling": "grid", "rotation": {"z": {"start": -30, "stop": 30, "num": 3}},
                    "translation": {"y": 700}}}


@pytest.fixture
def held_build(monkeypatch):
    """make_renderer that goes on until the test sets the returned event."""
    real, release = render.make_renderer, threading.Event()

    def slow(*args):
        release.wait(10)
        return real(*args)

    monkeypatch.setattr(render, "make_renderer", slow)
    return release


def worker_with(name, renderer):
    return SimpleNamespace(drrkit={name: {"renderer": renderer}})


def test_a_ct_waits_for_the_renderer_being_built_and_bills_it_to_setup(tiny, held_build):
    recipe = Recipe.from_dict(RECIPE)
    shared = _WorkerRenderer()
    shared.start(recipe, "fast", "cpu", None)
    took = {}

    def task():
        timing.take()
        took["images"] = render_all(shared, tiny, recipe.sample_poses(tiny.id))
        took.update(timing.take())

    t = threading.Thread(target=task)
    t.start()
    time.sleep(0.3)
    assert t.is_alive() and "images" not in took  # waiting for the renderer, not rendering
    held_build.set()
    t.join(30)
    assert took["images"].shape == (3, 12, 12) and took["setup"] >= 0.3 and took["march"] > 0
    assert shared.setup_seconds >= 0.3
    state = worker_with("p", shared)
    assert asyncio.run(describe_renderer("p", dask_worker=state))["backend"] == "fast"
    assert renderer_setup_seconds("p", dask_worker=state) == shared.setup_seconds


def test_describing_a_renderer_still_building_leaves_the_event_loop_free(held_build):
    shared = _WorkerRenderer()
    shared.start(Recipe.from_dict(RECIPE), "fast", "cpu", None)
    threading.Timer(0.5, held_build.set).start()

    async def describe_while_ticking():
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        ticker = asyncio.create_task(tick())
        said = await describe_renderer("p", dask_worker=worker_with("p", shared))
        ticker.cancel()
        return said, ticks

    said, ticks = asyncio.run(describe_while_ticking())
    assert said["backend"] == "fast" and ticks >= 5  # the loop ran on while the build went on


def test_a_failed_build_fails_rendering_and_describes_itself(tiny):
    recipe = Recipe.from_dict(RECIPE)
    shared = _WorkerRenderer()
    shared.build(recipe, "no-such-backend", "cpu", None)
    with pytest.raises(RendererSetupFailed, match="could not build its renderer: ValueError: unknown backend"):
        render_all(shared, tiny, recipe.sample_poses(tiny.id))
    state = worker_with("p", shared)
    described = asyncio.run(describe_renderer("p", dask_worker=state))
    assert described["backend"] == "none" and "unknown backend 'no-such-backend'" in described["error"]
    assert renderer_setup_seconds("p", dask_worker=state) is None


def test_two_runs_keep_their_state_apart_on_one_worker(monkeypatch):
    monkeypatch.setattr(store, "CorpusWriter", lambda path: path)
    worker = SimpleNamespace()
    a = RenderPlugin(Recipe.from_dict(RECIPE), "fast", "cpu", None, "a.zarr", name="run-a")
    b = RenderPlugin(Recipe.from_dict(RECIPE), "fast", "cpu", None, "b.zarr", name="run-b")
    a.setup(worker)
    b.setup(worker)
    assert {k: v["writer"] for k, v in worker.drrkit.items()} == {"run-a": "a.zarr", "run-b": "b.zarr"}
    a.teardown(worker)
    assert list(worker.drrkit) == ["run-b"]


def test_a_run_whose_workers_cannot_build_a_renderer_stops_with_its_cts_pending(tmp_path):
    """A set-up error is not a bad CT: the run stops naming the worker and the reason, no CT is
    recorded as failed, and the store's renderer record stays what was asked (never "none")."""
    write_cohort(tmp_path / "cts", n=2, shape=24, seed=3)
    out = tmp_path / "c.zarr"

    def job(backend):
        return RenderJob(recipe=Recipe.from_dict(RECIPE), out=out, ct_dir=tmp_path / "cts", backend=backend,
                         device="cpu")

    with pytest.raises(RendererSetupFailed, match=r"worker cpu0: could not build its renderer: .*unknown backend"):
        render_corpus(job("no-such-backend"), cluster=ClusterSpec(workers=1, threads_per_worker=1))
    assert [row["status"] for row in open_corpus(out).ct_table()] == ["pending", "pending"]
    assert open_corpus(out).attrs["run"]["renderer"]["backend"] == "no-such-backend"  # as asked, not "none"
    # the store made again with a renderer that builds: both CTs, and the record says what was built
    good = RenderJob(recipe=Recipe.from_dict(RECIPE), out=out, ct_dir=tmp_path / "cts", backend="fast",
                     device="cpu", overwrite=True)
    report = render_corpus(good, cluster=ClusterSpec(workers=1, threads_per_worker=1))
    assert report.exit_code == 0 and open_corpus(out).attrs["run"]["renderer"]["backend"] == "fast"
