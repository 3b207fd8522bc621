"""One autotuning pass per machine: a lock file beside Triton's cache.

A corpus run starts several worker processes per GPU (pipeline/cluster.py). At their first CT each
would otherwise time the kernel's tile shapes itself, all at once on one GPU: N compilations of
every tile competing for the cores that decode CTs, and timings of each process disturbed by the
kernels of the others, so the tile chosen is partly noise. With Triton's `cache_results` the first
process to tune a key writes the timings to the cache folder; the others, waiting on this lock,
then read them from there instead of tuning again.

The lock is `flock` on a file in the cache folder: released by the kernel when a process dies, so
a worker killed mid-tune does not stall the rest; one hung past LOCK_TIMEOUT_S is passed by.
Where the folder cannot hold a lock file (read only, no flock on the file system), tuning goes on
unlocked, as Triton does by itself. A cache folder on a shared file system whose flock spans
hosts makes the lock span them too: one tune per cluster, the others waiting for it.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = "drrkit-autotune.lock"
# A first tune of all six tiles on a cold cache takes seconds; a holder past this is taken for hung.
LOCK_TIMEOUT_S = 300.0
POLL_S = 0.05

_done: set = set()  # keys this process has tuned, or read from the cache, under the lock
_guard = threading.Lock()


def cache_dir() -> Path:
    """Triton's cache folder: TRITON_CACHE_DIR, else Triton's own setting, else ~/.triton/cache."""
    env = os.environ.get("TRITON_CACHE_DIR")
    if env:
        return Path(env)
    try:
        import triton

        return Path(triton.knobs.cache.dir)
    except (ImportError, AttributeError):
        return Path.home() / ".triton" / "cache"


@contextmanager
def machine_lock(folder: Path | None = None, timeout_s: float = LOCK_TIMEOUT_S):
    """Held by one process (and thread) of the machine at a time; yields whether it is held.
    After `timeout_s` of waiting (a holder hung in a compile or on its GPU) it yields False and
    the caller tunes unlocked, as Triton does by itself."""
    handle = _open_lock(folder)
    held = handle is not None and _acquire(handle, timeout_s)
    try:
        yield held
    finally:
        if handle is not None:
            if held:
                fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


def _open_lock(folder: Path | None):
    try:
        folder = folder or cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        return open(folder / LOCK_NAME, "a+")
    except OSError:
        return None


def _acquire(handle, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)
        except OSError:  # no flock on this file system
            return False


def once_per_machine(key, launch, folder: Path | None = None) -> None:
    """Run `launch()`; the first time this process meets `key`, under the machine lock, so that
    the autotuner runs in one process at a time and later ones find its result in the cache."""
    if key in _done:
        launch()
        return
    with _guard, machine_lock(folder):
        launch()
    _done.add(key)
