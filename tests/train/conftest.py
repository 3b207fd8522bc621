"""Fixtures for the X-WIN trainer tests: one tiny rendered store per session (12 phantoms at 32³,
7 yaw views of 32×32 from the X-WIN recipe, DiffDRR on CPU), a folder of PNG "radiographs", a
cheap config and one 30-step run of the tiny recipe shared by the evaluation tests."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from drrkit.geometry.recipe import load_recipe
from drrkit.phantom import write_cohort
from drrkit.pipeline import RenderJob, render_corpus
from drrkit.train.config import load_train_config

N_PHANTOMS, COHORT_SEED = 12, 2  # seed 2 gives 6 cases with a nodule and 6 without


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("xwin")
    write_cohort(root / "cts", N_PHANTOMS, shape=32, seed=COHORT_SEED)
    recipe = load_recipe("xwin").with_height(32).with_views(7)
    report = render_corpus(RenderJob(recipe=recipe, out=root / "store.zarr", ct_dir=root / "cts",
                                     backend="diffdrr", device="cpu"))
    assert report.exit_code == 0
    return root / "store.zarr"


def write_pngs(folder, n, seed=0, stripe=False, size=40):
    """n grey PNGs: a soft vertical band (a 'mediastinum') on noise; `stripe` adds a bright bar."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, size)[None, :].repeat(size, 0)
    for i in range(n):
        img = 110 + 90 * np.exp(-((x - 0.5) ** 2) / 0.02) + 15 * rng.standard_normal((size, size))
        if stripe:
            img[size // 4:size // 4 + 5, :] = 250
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"img_{i:03d}.png")
    return folder


@pytest.fixture(scope="session")
def real_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    write_pngs(root / "site_a", 5, seed=1)
    write_pngs(root / "site_b" / "nested", 3, seed=2)
    return root


@pytest.fixture(scope="session")
def tiny_cfg():
    return load_train_config("train-xwin-tiny")


@pytest.fixture(scope="session")
def fast_cfg(tiny_cfg):
    """Cheaper than the tiny recipe for tests that only need a few steps."""
    cfg = tiny_cfg
    return dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, depth=2, view_predictor_depth=1, masked_predictor_depth=1),
        data=dataclasses.replace(cfg.data, batch_size=2, n_targets=2, real_batch_size=2),
        optim=dataclasses.replace(cfg.optim, steps=4),
        run=dataclasses.replace(cfg.run, checkpoint_every=2))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_store, real_dir, tiny_cfg):
    """30 steps of the tiny recipe with real radiographs: (run folder, summary)."""
    from drrkit.train import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    return out, train(tiny_cfg, [tiny_store], out, real_dir=real_dir)
