"""The render phase clock: per thread, reset by take(), filled by both backends and the worker lock."""

import threading
import time

import pytest

from drrkit.geometry.poses import PoseSet
from drrkit.geometry.recipe import Recipe
from drrkit.pipeline.worker import _WorkerRenderer
from drrkit.render import make_renderer, timing
from drrkit.render.base import render_all

RECIPE = {"name": "t", "detector": {"sdd": 1020, "height": 12, "width": 12, "delx": 30.0, "dely": 30.0},
          "poses": {"sampling": "grid", "rotation": {"z": {"start": -30, "stop": 30, "num": 3}},
                    "translation": {"y": 700}}}


def test_phases_add_up_per_thread_and_take_resets():
    timing.take()
    with timing.phase("march"):
        time.sleep(0.02)
    with timing.phase("march"):
        time.sleep(0.02)
    seen = {}

    def other():  # another thread's clock is its own
        with timing.phase("prepare"):
            time.sleep(0.01)
        seen.update(timing.take())

    t = threading.Thread(target=other)
    t.start()
    t.join()
    totals = timing.take()
    assert set(totals) == {"march"} and 0.04 <= totals["march"] < 1.0
    assert set(seen) == {"prepare"} and seen["prepare"] >= 0.01
    assert timing.take() == {}


def test_a_phase_raising_still_counts_and_unknown_names_are_refused():
    timing.take()
    with pytest.raises(RuntimeError):
        with timing.phase("upload"):
            raise RuntimeError("boom")
    assert "upload" in timing.take()
    with pytest.raises(ValueError, match="unknown render phase"):
        with timing.phase("decode"):
            pass


@pytest.mark.parametrize("backend", ["fast", "diffdrr"])
def test_backends_report_where_render_time_went(tiny, backend):
    recipe = Recipe.from_dict(RECIPE)
    renderer = make_renderer(recipe, backend, "cpu", None)
    poses = recipe.sample_poses(tiny.id)
    timing.take()
    images = render_all(renderer, tiny, poses)
    totals = timing.take()
    expected = {"upload", "prepare", "march"} if backend == "fast" else {"prepare", "march"}
    assert set(totals) == expected and images.shape == (3, 12, 12)
    assert all(v >= 0 for v in totals.values()) and totals["march"] > 0


def test_the_worker_lock_bills_waiting_to_wait(tiny):
    recipe = Recipe.from_dict(RECIPE)
    serial = _WorkerRenderer.of(make_renderer(recipe, "fast", "cpu", None))
    poses: PoseSet = recipe.sample_poses(tiny.id)
    waited = {}

    def second():
        timing.take()
        render_all(serial, tiny, poses)
        waited.update(timing.take())

    serial.lock.acquire()  # another CT holds the device
    t = threading.Thread(target=second)
    t.start()
    time.sleep(0.2)
    serial.lock.release()
    t.join()
    assert waited["wait"] >= 0.2 and {"upload", "prepare", "march"} <= set(waited)
