"""drrkit's waits on a CUDA device sleep instead of spinning a host core (device_wait.py)."""

import time

import pytest
import torch

from drrkit.render import device_wait


def test_mode_defaults_to_block_and_refuses_unknown_values(monkeypatch):
    monkeypatch.delenv("DRRKIT_CUDA_WAIT", raising=False)
    assert device_wait.mode() == "block"
    monkeypatch.setenv("DRRKIT_CUDA_WAIT", " Spin ")
    assert device_wait.mode() == "spin"
    monkeypatch.setenv("DRRKIT_CUDA_WAIT", "busy")
    with pytest.raises(ValueError, match="DRRKIT_CUDA_WAIT must be one of"):
        device_wait.mode()


def test_nothing_to_wait_for_on_the_cpu(monkeypatch):
    monkeypatch.setenv("DRRKIT_CUDA_WAIT", "busy")  # not even read off CUDA
    device_wait.wait("cpu")
    device_wait.wait(torch.device("cpu"))


def _thread_cpu_while_waiting(mode: str, monkeypatch) -> tuple[float, float]:
    """(host CPU seconds of this thread, wall seconds) of one wait on ~0.5 s of queued kernels."""
    monkeypatch.setenv("DRRKIT_CUDA_WAIT", mode)
    a = torch.randn(4096, 4096, device="cuda")
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(3):  # time one matmul to queue about half a second of them
        a @ a
    torch.cuda.synchronize()
    n = max(4, int(0.5 / ((time.perf_counter() - t0) / 3)))
    for _ in range(n):
        b = a @ a
    c0, t0 = time.thread_time(), time.perf_counter()
    device_wait.wait(b.device)
    return time.thread_time() - c0, time.perf_counter() - t0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_wait_on_queued_kernels_sleeps_and_spin_mode_spins(monkeypatch):
    cpu, wall = _thread_cpu_while_waiting("block", monkeypatch)
    assert wall > 0.1 and cpu < 0.2 * wall, (cpu, wall)
    cpu, wall = _thread_cpu_while_waiting("spin", monkeypatch)
    assert wall > 0.1 and cpu > 0.5 * wall, (cpu, wall)  # CUDA's default, kept for comparison runs


def test_a_bad_value_is_refused_before_the_store_is_made(monkeypatch, tmp_path):
    from drrkit.geometry.recipe import Recipe
    from drrkit.pipeline import RenderJob, render_corpus

    monkeypatch.setenv("DRRKIT_CUDA_WAIT", "sleepy")
    recipe = Recipe.from_dict({"name": "mini", "detector": {"sdd": 1020, "height": 8, "width": 8, "delx": 48.0,
                                                             "dely": 48.0},
                               "poses": {"sampling": "grid", "rotation": {"z": {"start": 0, "stop": 0, "num": 1}},
                                         "translation": {"y": 700}}})
    with pytest.raises(ValueError, match="DRRKIT_CUDA_WAIT"):
        render_corpus(RenderJob(recipe=recipe, out=tmp_path / "c.zarr", device="cpu"))
    assert not (tmp_path / "c.zarr").exists()
