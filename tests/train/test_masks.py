"""I-JEPA multiblock masks built in the collate function."""

import pytest
import torch

from drrkit.train.config import MaskConfig
from drrkit.train.masks import MaskCollator, apply_masks


def samples(n, step=0):
    return [{"x": torch.full((2,), float(i)), "step": step} for i in range(n)]


def test_shapes_ranges_and_disjointness():
    cfg = MaskConfig()  # release defaults: 4 target blocks of 15-20 %, context block 85-100 %
    collate = MaskCollator(cfg, grid=14, seed=0)
    for step in range(20):
        batch = collate(samples(5, step))
        enc, pred = batch["masks_enc"], batch["masks_pred"]
        assert batch["x"].shape == (5, 2)
        assert enc.ndim == 2 and enc.shape[0] == 5 and pred.shape[:2] == (4, 5)
        assert int(enc.min()) >= 0 and int(enc.max()) < 196 and int(pred.min()) >= 0 and int(pred.max()) < 196
        assert 0.15 * 196 * 0.5 <= pred.shape[2] <= 0.2 * 196 + 1  # a block of 15-20 % of the grid
        assert enc.shape[1] > cfg.min_keep
        for b in range(5):  # the context never sees a target patch (allow_overlap: false)
            assert not set(enc[b].tolist()) & set(pred[:, b].flatten().tolist())
            assert len(set(enc[b].tolist())) == enc.shape[1]


def test_masks_are_a_function_of_seed_and_step():
    collate = MaskCollator(MaskConfig(), grid=8, seed=3)
    a, b = collate(samples(3, step=7)), collate(samples(3, step=7))
    assert torch.equal(a["masks_enc"], b["masks_enc"]) and torch.equal(a["masks_pred"], b["masks_pred"])
    c = collate(samples(3, step=8))
    assert not torch.equal(a["masks_pred"], c["masks_pred"]) or not torch.equal(a["masks_enc"], c["masks_enc"])
    other_stream = MaskCollator(MaskConfig(), grid=8, seed=3, stream=1)(samples(3, step=7))
    assert not torch.equal(a["masks_pred"], other_stream["masks_pred"])


def test_impossible_block_sizes_fail_at_construction():
    with pytest.raises(ValueError, match="min_keep"):
        MaskCollator(MaskConfig(min_keep=4), grid=6, seed=0)


def test_apply_masks_gathers_mask_major():
    x = torch.arange(2 * 5 * 1).float().reshape(2, 5, 1)
    m0, m1 = torch.tensor([[0, 1], [2, 3]]), torch.tensor([[4, 4], [0, 0]])
    out = apply_masks(x, [m0, m1])
    assert out[:, :, 0].tolist() == [[0, 1], [7, 8], [4, 4], [5, 5]]
