"""Where a CT's render time goes: a per-thread clock that renderers advance and tasks read.

A corpus task's "render" phase is one number; whether a slow run waits on the device lock, on
moving the volume to the device, on preparing it (density, crop, per-axis layouts) or on the
kernels themselves decides what to make faster. Renderers wrap those steps in `phase(name)`; the
task that called them takes the sums with `take()` and records them beside load/render/write.
The clock is per thread because a Dask worker runs several CT tasks in threads at once.

Phases (seconds per CT, summed over every `render` call of the CT, masks included):
  setup    waiting for the worker's renderer to be built (torch import, CUDA context), which
           happens in the background while its first CTs decode (pipeline/worker.py): first CTs only
  wait     waiting for the worker's device (pipeline/worker.py serialises rendering per device)
  upload   the volume from host memory to the device (zero-copy, ~0, on the CPU)
  prepare  density, support crop, slab stacks or kernel layouts: per-CT work before any ray
  march    ray integration and the images' copy back to host memory
On CUDA a phase ends with a device synchronisation, so queued kernels are not billed to the next
(a sleeping wait, drrkit/render/device_wait.py).
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

from drrkit.render.device_wait import wait

PHASES = ("setup", "wait", "upload", "prepare", "march")
# a phase's key among a task's timings (beside load/render/write): render_wait, render_upload, ...
KEY_PREFIX = "render_"


class _Clock(threading.local):
    def __init__(self):
        self.totals: dict[str, float] = {}


_clock = _Clock()


@contextmanager
def phase(name: str, device=None):
    """Add the seconds spent in the block to this thread's `name` total. `device`: a torch
    device to synchronise before the clock stops (CUDA; ignored otherwise)."""
    if name not in PHASES:
        raise ValueError(f"unknown render phase {name!r}; one of {PHASES}")
    t0 = time.perf_counter()
    try:
        yield
    finally:
        _synchronise(device)
        _clock.totals[name] = _clock.totals.get(name, 0.0) + time.perf_counter() - t0


def take() -> dict[str, float]:
    """This thread's totals since the last `take()`, then reset to none."""
    totals, _clock.totals = _clock.totals, {}
    return totals


def _synchronise(device) -> None:
    if device is not None:
        wait(device)  # asleep, not spinning a core the CT decoders need (device_wait.py)
