"""The autotune lock (render/tuning_lock.py): one process of the machine at a time, once per key."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drrkit.render import tuning_lock

ROOT = Path(__file__).resolve().parents[2]

HOLD = """
import sys, time
from pathlib import Path
from drrkit.render.tuning_lock import machine_lock
with machine_lock(Path(sys.argv[1])) as held:
    print("held" if held else "unlocked", flush=True)
    time.sleep(1.0)
"""


def test_a_second_process_waits_for_the_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    t0 = time.perf_counter()
    with tuning_lock.machine_lock(tmp_path) as held:
        waited = time.perf_counter() - t0
    holder.wait(10)
    assert held and waited > 0.5  # the holder sleeps 1 s after saying it holds the lock


def test_a_lock_held_by_a_killed_process_is_released(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD.replace("1.0", "60"), str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait(10)
    t0 = time.perf_counter()
    with tuning_lock.machine_lock(tmp_path) as held:
        assert held and time.perf_counter() - t0 < 5


def test_only_the_first_launch_of_a_key_takes_the_lock(tmp_path, monkeypatch):
    taken = []
    real = tuning_lock.machine_lock

    def spy(folder=None):
        taken.append(folder)
        return real(folder)

    monkeypatch.setattr(tuning_lock, "machine_lock", spy)
    monkeypatch.setattr(tuning_lock, "_done", set())
    launches = []
    for key in ("a", "a", "b", "a"):
        tuning_lock.once_per_machine(key, lambda: launches.append(1), folder=tmp_path)
    assert len(launches) == 4 and taken == [tmp_path, tmp_path]  # "a" and "b", once each
    assert (tmp_path / tuning_lock.LOCK_NAME).exists()


def test_an_unwritable_cache_folder_tunes_unlocked(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with tuning_lock.machine_lock(blocker / "cache") as held:
        assert held is False


def test_the_cache_folder_follows_triton_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    assert tuning_lock.cache_dir() == tmp_path


TUNE = """
import torch
from drrkit.render import triton_march
vol = torch.rand(64, 64, 64, device="cuda")
mats = torch.eye(4, device="cuda")[:3].repeat(8, 1, 1)
mats[:, :3, 3] = 32.0
ys, xs = torch.meshgrid(torch.arange(48.0), torch.arange(40.0), indexing="ij")
pts = torch.stack([xs.flatten() - 20, ys.flatten() - 24, torch.full((48 * 40,), 100.0)], 1).cuda()
triton_march.project(vol, mats, pts, 48, 40)
torch.cuda.synchronize()
print("tuned" if getattr(triton_march._TUNED, "bench_time", None) is not None else "cached", flush=True)
"""


@pytest.mark.gpu
def test_concurrent_processes_tune_once_on_a_cold_cache(tmp_path):
    """Four processes meet a new key at once, on an empty cache: one times the tiles, the others
    read its result from the cache."""
    from drrkit.render import triton_march

    if not triton_march._CACHE:
        pytest.skip("this Triton has no cache_results: every process tunes for itself")
    env = {**os.environ, "TRITON_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", TUNE], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    said = sorted(p.communicate(timeout=300)[0].strip() for p in procs)
    assert all(p.returncode == 0 for p in procs)
    assert said == ["cached", "cached", "cached", "tuned"], said


def test_a_holder_past_the_timeout_is_passed_by(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD.replace("1.0", "30"), str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.perf_counter()
        with tuning_lock.machine_lock(tmp_path, timeout_s=0.3) as held:
            waited = time.perf_counter() - t0
        assert held is False and 0.3 <= waited < 5
    finally:
        holder.kill()
        holder.wait(10)
