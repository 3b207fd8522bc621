"""The training loop: the tiny recipe learns, checkpoints load weights-only, resume is exact,
every loss can be switched off, runs are protected from accidental overwrite."""

import dataclasses
import json

import pytest
import torch

from drrkit.config import ConfigError
from drrkit.train import train
from drrkit.train.checkpoint import load_checkpoint
from drrkit.train.metrics import MetricsLog

LOSSES = ("align", "affinity", "mim", "domain", "cls", "decoder")


def test_tiny_recipe_loss_falls_and_run_folder_is_complete(trained_run):
    out, summary = trained_run
    records = MetricsLog(out / "metrics.jsonl").read()
    assert [r["step"] for r in records] == list(range(1, 31)) and summary["finished"]
    assert summary["target_init_share"] == pytest.approx(0.94, abs=0.01)  # f' after 30 steps of EMA
    first, last = (sum(r["total"] for r in rs) / 5 for rs in (records[:5], records[-5:]))
    assert last < first, (first, last)
    for key in ("total", *LOSSES, "lr", "wd", "momentum", "images_per_s"):
        assert key in records[0], key
    for name in ("config.yaml", "run.json", "split.json", "loss_curve.png", "train_summary.json"):
        assert (out / name).is_file(), name
    assert (out / "loss_curve.png").stat().st_size > 5000
    payload = load_checkpoint(out / "checkpoints" / "last.pt")  # torch.load(weights_only=True)
    assert payload["step"] == 30 and payload["config"]["name"] == "xwin-tiny"
    assert payload["config"]["model"]["size"] == "tiny" and payload["inputs"]["real_dir"]
    assert {"python", "numpy", "torch"} <= set(payload["rng"])
    assert any(k.startswith("target_encoder.") for k in payload["model"])
    split = json.loads((out / "split.json").read_text())
    assert len(split["val"]) == 2 and len(split["train"]) == 10


def test_resume_is_exact(tmp_path, tiny_store, real_dir, fast_cfg):
    cfg = dataclasses.replace(fast_cfg, optim=dataclasses.replace(fast_cfg.optim, steps=4),
                              run=dataclasses.replace(fast_cfg.run, checkpoint_every=100))
    straight = tmp_path / "straight"
    train(cfg, [tiny_store], straight, real_dir=real_dir)
    split = tmp_path / "split"
    first = train(cfg, [tiny_store], split, real_dir=real_dir, stop_at=2)
    assert first["end_step"] == 2 and not first["finished"]
    second = train(None, [], split, resume=True)
    assert second["start_step"] == 2 and second["finished"]
    a, b = MetricsLog(straight / "metrics.jsonl").read(), MetricsLog(split / "metrics.jsonl").read()
    assert [r["step"] for r in b] == list(range(1, 5))
    for ra, rb in zip(a, b):
        for key in ("total", *LOSSES, "lr"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-7), (ra["step"], key)
    pa = load_checkpoint(straight / "checkpoints" / "last.pt")
    pb = load_checkpoint(split / "checkpoints" / "last.pt")
    for key, value in pa["model"].items():
        assert torch.allclose(value, pb["model"][key], atol=1e-6), key


def test_sim_only_run_skips_domain_losses_and_is_protected(tmp_path, tiny_store, fast_cfg):
    cfg = dataclasses.replace(fast_cfg, optim=dataclasses.replace(fast_cfg.optim, steps=1))
    train(cfg, [tiny_store], tmp_path / "r", real_dir=None)
    record = MetricsLog(tmp_path / "r" / "metrics.jsonl").read()[-1]
    assert "domain" not in record and "cls" not in record and "mim" in record and "align" in record
    with pytest.raises(ConfigError, match="already holds a run"):
        train(cfg, [tiny_store], tmp_path / "r")
    other = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, tau=0.2))
    with pytest.raises(ConfigError, match="loss.tau"):
        train(other, [], tmp_path / "r", resume=True)
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(None, [], tmp_path / "none", resume=True)
    done = train(cfg, [], tmp_path / "r", resume=True)  # finished run: nothing left, no error
    assert done["start_step"] == done["end_step"] == 1


@pytest.mark.gpu
def test_cuda_bf16_steps(tmp_path, tiny_store, real_dir, fast_cfg):
    cfg = dataclasses.replace(fast_cfg, data=dataclasses.replace(fast_cfg.data, num_workers=2),
                              optim=dataclasses.replace(fast_cfg.optim, steps=3))
    summary = train(cfg, [tiny_store], tmp_path / "gpu", real_dir=real_dir, device="cuda")
    assert summary["device"].startswith("cuda") and torch.isfinite(torch.tensor(summary["last"]["total"]))
