"""One autotuning pass per machine: a lock file beside Triton's cache.

A corpus run starts several worker processes per GPU (pipeline/cluster.py). At their first CT each
would otherwise time the kernel's tile shapes itself, all at once on one GPU: N compilations of
every tile competing for the cores that decode CTs, and timings of each process disturbed by the
kernels of the others, so the tile chosen is partly noise. With Triton's `cache_results` the first
process to tune a key writes the timings to the cache folder; the others, waiting on this lock,
then read them from there instead of tuning again.

The lock is `flock` on a file in the cache folder: released by the kernel when a process dies, so
a worker killed mid-tune does not stall the rest. Where the folder cannot hold a lock file (read
only, no flock on the file system), tuning goes on unlocked, as Triton does by itself.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = "drrkit-autotune.lock"

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
def machine_lock(folder: Path | None = None):
    """Held by one process (and thread) of the machine at a time; yields whether it is held."""
    import fcntl

    try:
        folder = folder or cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK_NAME, "a+")
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()


def once_per_machine(key, launch, folder: Path | None = None) -> None:
    """Run `launch()`; the first time this process meets `key`, under the machine lock, so that
    the autotuner runs in one process at a time and later ones find its result in the cache."""
    if key in _done:
        launch()
        return
    with _guard, machine_lock(folder):
        launch()
    _done.add(key)
