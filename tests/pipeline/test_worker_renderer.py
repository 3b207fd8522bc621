"""A worker's renderer builds in the background: CTs wait for it only to render, and a build that
fails fails each CT the worker takes, naming the reason."""

import threading
import time
from types import SimpleNamespace

import pytest

import drrkit.render as render
from drrkit.geometry.recipe import Recipe
from drrkit.pipeline.worker import (RendererSetupFailed, _WorkerRenderer, describe_renderer,
                                    renderer_setup_seconds)
from drrkit.render import timing
from drrkit.render.base import render_all

RECIPE = {"name": "t", "detector": {"sdd": 1020, "height": 12, "width": 12, "delx": 30.0, "dely": 30.0},
          "poses": {"sampling": "grid", "rotation": {"z": {"start": -30, "stop": 30, "num": 3}},
                    "translation": {"y": 700}}}


def test_a_ct_waits_for_the_renderer_being_built_and_bills_it_to_setup(tiny, monkeypatch):
    recipe = Recipe.from_dict(RECIPE)
    real, release = render.make_renderer, threading.Event()

    def slow(*args):  # the build goes on until the test lets it finish
        release.wait(5)
        return real(*args)

    monkeypatch.setattr(render, "make_renderer", slow)
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
    release.set()
    t.join(30)
    assert took["images"].shape == (3, 12, 12) and took["setup"] >= 0.3 and took["march"] > 0
    assert shared.setup_seconds >= 0.3
    state = SimpleNamespace(drrkit={"renderer": shared})
    assert describe_renderer(state)["backend"] == "fast" and renderer_setup_seconds(state) == shared.setup_seconds


def test_a_failed_build_fails_each_ct_with_its_reason(tiny):
    recipe = Recipe.from_dict(RECIPE)
    shared = _WorkerRenderer()
    shared.build(recipe, "no-such-backend", "cpu", None)
    with pytest.raises(RendererSetupFailed, match="could not build its renderer: ValueError: unknown backend"):
        render_all(shared, tiny, recipe.sample_poses(tiny.id))
    state = SimpleNamespace(drrkit={"renderer": shared})
    described = describe_renderer(state)
    assert described["backend"] == "none" and "unknown backend 'no-such-backend'" in described["error"]
    assert renderer_setup_seconds(state) is None


def test_a_failed_build_is_a_render_error_of_the_ct(tiny, tmp_path):
    import nibabel as nib
    import numpy as np

    from drrkit.ct import CTSource
    from drrkit.pipeline.task import render_ct

    path = tmp_path / "tiny.nii.gz"
    nib.save(nib.Nifti1Image(tiny.hu.astype(np.int16), np.diag([*tiny.spacing, 1.0])), str(path))
    recipe = Recipe.from_dict(RECIPE)
    shared = _WorkerRenderer()
    shared.build(recipe, "no-such-backend", "cpu", None)
    result = render_ct(0, CTSource(id="tiny", path=str(path), kind="nifti", files=(str(path),)), recipe, shared, writer=None)
    assert result.status == "failed" and result.error_kind == "render_error:RendererSetupFailed"
    assert "tiny.nii.gz" in result.error and "unknown backend" in result.error
