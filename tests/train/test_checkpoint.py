"""Checkpoint files: last.pt and the kept step files hold the same payload, written atomically."""

import os

import torch

from drrkit.train.checkpoint import checkpoint_dir, load_checkpoint, save_checkpoint, step_checkpoints


def payload(step):
    return {"step": step, "model": {"w": torch.full((3,), float(step))}}


def test_step_files_and_last_hold_each_save_and_old_steps_are_pruned(tmp_path):
    for step in (10, 20, 30):
        last = save_checkpoint(tmp_path, payload(step), keep=2)
    assert [p.name for p in step_checkpoints(tmp_path)] == ["step-0000020.pt", "step-0000030.pt"]
    for path, step in [(last, 30), *zip(step_checkpoints(tmp_path), (20, 30))]:
        loaded = load_checkpoint(path)
        assert loaded["step"] == step and torch.equal(loaded["model"]["w"], torch.full((3,), float(step)))
    # Replacing last.pt never touches a kept step file (they may share bytes on disk).
    assert os.stat(step_checkpoints(tmp_path)[0]).st_size > 0
    assert sorted(p.name for p in checkpoint_dir(tmp_path).iterdir()) == [
        "last.pt", "step-0000020.pt", "step-0000030.pt"]  # no temp files left


def test_keep_zero_writes_last_only(tmp_path):
    save_checkpoint(tmp_path, payload(5), keep=0)
    assert [p.name for p in checkpoint_dir(tmp_path).iterdir()] == ["last.pt"]
