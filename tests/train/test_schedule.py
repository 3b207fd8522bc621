"""Learning-rate, weight-decay and EMA schedules; optimizer parameter groups."""

import pytest
import torch

from drrkit.train.config import ModelConfig, OptimConfig
from drrkit.train.loop import param_groups
from drrkit.train.model import build_xwin
from drrkit.train.schedule import make_schedule


def test_release_schedule():
    cfg = OptimConfig(base_lr=1e-4, epochs=100, warmup_epochs=10)
    s = make_schedule(cfg, n_train=960, global_batch=96)  # 10 steps per epoch
    assert (s.steps_per_epoch, s.total_steps, s.warmup_steps) == (10, 1000, 100)
    assert s.peak_lr == pytest.approx(1e-4 * 96 / 256)
    assert s.lr(0) == pytest.approx(2e-5) and s.lr(100) == pytest.approx(s.peak_lr)
    assert s.lr(50) == pytest.approx((2e-5 + s.peak_lr) / 2)
    assert s.lr(1000) == pytest.approx(1e-6) and s.lr(550) == pytest.approx((s.peak_lr + 1e-6) / 2)
    assert s.weight_decay(0) == pytest.approx(0.004) and s.weight_decay(1000) == pytest.approx(0.04)
    assert s.momentum(0) == pytest.approx(0.996) and s.momentum(500) == pytest.approx(0.998)
    assert s.momentum(1000) == pytest.approx(1.0)


def test_steps_override_keeps_warmup_share():
    s = make_schedule(OptimConfig(epochs=100, warmup_epochs=10, steps=30), n_train=5, global_batch=4)
    assert (s.total_steps, s.warmup_steps) == (30, 3)


def test_no_weight_decay_on_biases_and_norms():
    model = build_xwin(ModelConfig(size="tiny", img_size=32, patch_size=8, depth=1), 0)
    decay, no_decay = param_groups(model)
    assert no_decay["weight_decay"] == 0.0 and no_decay["wd_exclude"] and not decay["wd_exclude"]
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].endswith("bias") or "norm" in names[id(p)] for p in no_decay["params"])
    assert all(p.ndim > 1 for p in decay["params"])
    n_trainable = sum(1 for p in model.parameters() if p.requires_grad)
    assert len(decay["params"]) + len(no_decay["params"]) == n_trainable
    assert not any(n.startswith("target_encoder") for n in (names[id(p)] for p in decay["params"]))


def test_init_share_is_what_the_ema_leaves_of_the_initial_target_encoder():
    s = make_schedule(OptimConfig(steps=400), n_train=64, global_batch=16)
    assert s.init_share() == pytest.approx(0.45, abs=0.01)  # 0.996 → 1.0 over 400 steps
    assert make_schedule(OptimConfig(steps=10_000), 64, 16).init_share() < 1e-8
    assert s.init_share(0) == 1.0 and s.init_share(100) > s.init_share()
    model = build_xwin(ModelConfig(size="tiny", img_size=32, patch_size=8, depth=1), 0)
    start = [p.detach().clone() for p in model.target_encoder.parameters()]
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.zero_()  # f = 0: what is left of f' after the updates is its initialisation alone
    for step in range(60):
        model.update_target_encoder(s.momentum(step))
    checked = 0
    for p, p0 in zip(model.target_encoder.parameters(), start):
        if p0.abs().sum() > 0:
            torch.testing.assert_close(p, p0 * s.init_share(60), rtol=1e-4, atol=1e-7)
            checked += 1
    assert checked >= 8  # the weights (biases start at 0)
    assert type(s).from_dict(s.to_dict()) == s
