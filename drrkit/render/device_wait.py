"""Waiting for a CUDA device without keeping a host core busy.

A host thread that waits on the GPU (a synchronise, a copy back to host memory, a `.item()`) spins
by CUDA's default: its core runs flat out until the kernels finish. In a corpus run those cores are
the ones that decode the next CTs, and the host sets the pace there (README, Status: 8 worker
processes on 16 cores, the GPU idle most of the run). drrkit's own waits record an event made with
the blocking-sync flag and wait on it instead, so the thread sleeps until the device signals;
waking costs tens of microseconds, next to the milliseconds a CT's kernels take.

`DRRKIT_CUDA_WAIT=spin` in the environment restores CUDA's default, for comparison runs
(`benchmarks/bench_corpus.py --cuda-wait both`); `block`, the default, is the above.
"""

from __future__ import annotations

import os

MODES = ("block", "spin")


def mode() -> str:
    """The wait asked for by DRRKIT_CUDA_WAIT (default block); any other value is an error."""
    value = os.environ.get("DRRKIT_CUDA_WAIT", "block").strip().lower() or "block"
    if value not in MODES:
        raise ValueError(f"DRRKIT_CUDA_WAIT must be one of {MODES}, got {value!r}")
    return value


def wait(device) -> None:
    """Return once every kernel queued so far on `device`'s current stream has finished (drrkit
    queues all its work there). Nothing to wait for on other devices."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return
    if mode() == "spin":
        torch.cuda.synchronize(device)
        return
    done = torch.cuda.Event(blocking=True)
    done.record(torch.cuda.current_stream(device))
    done.synchronize()
