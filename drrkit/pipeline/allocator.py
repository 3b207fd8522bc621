"""Keep a corpus process's freed memory for its next CT: glibc malloc settings.

Each CT a worker reads takes a few hundred MB at once (the compressed file, the decompressed
voxels, the float32 HU volume: ~570 MB for a 512x512x300 int16 `.nii.gz`). glibc serves blocks
that large with a fresh mmap() each and returns them with munmap() when freed, so every CT pays
the kernel to fault in and zero its pages again: 0.17-0.2 CPU-seconds per such CT on the 2-core
dev machine, a quarter of its host cost (benchmarks/bench_ct_read.py). With these settings the
process keeps what it frees and the next CT reuses pages that are already mapped:

  MALLOC_MMAP_MAX_=0         large blocks come from the heap, not one mmap() each
  MALLOC_ARENA_MAX=1         task threads share the main heap (a thread's own heap is capped at
                             64 MB, so its large blocks would still be mmap()ed)
  MALLOC_TRIM_THRESHOLD_     freed memory at the top of the heap is not handed back

The price: a process's resident memory stays at its peak (about two CTs' worth per task thread).
glibc reads these variables when a process starts, so drrkit sets them for the worker processes
it spawns (Dask's `pre-spawn-environ`); values already in the environment win. `dask worker`
processes started by hand need them in their nanny's `pre-spawn-environ`, a Dask config file
(README), since the nanny sets Dask's own MALLOC_TRIM_THRESHOLD_ over an exported one.
Allocators other than glibc's ignore them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

KEEP_MEMORY_ENV = {
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_TRIM_THRESHOLD_": str(1 << 40),
}

# mallopt() parameters (glibc malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def worker_environ(environ=None) -> dict[str, str]:
    """KEEP_MEMORY_ENV with the values already in `environ` (default os.environ) kept: a user's
    own choice wins, also over Dask's default MALLOC_TRIM_THRESHOLD_ for spawned workers."""
    environ = os.environ if environ is None else environ
    return {k: environ.get(k, v) for k, v in KEEP_MEMORY_ENV.items()}


def malloc_environ(dask_worker=None) -> dict[str, str | None]:
    """This process's glibc malloc variables (None where unset): what a worker started with, for
    the run report. Runs through `Client.run`, which passes the worker as `dask_worker`."""
    return {k: os.environ.get(k) for k in KEEP_MEMORY_ENV}


def keep_freed_memory() -> bool:
    """The same settings for this, already running, process through mallopt(): large blocks of
    the main thread then come from the heap and stay mapped once freed (trimmed only above 2 GiB,
    mallopt's largest threshold). A running process cannot change its arena count, so threads
    other than the main one keep glibc's defaults. Returns
    whether glibc took them; False elsewhere (musl, macOS, Windows), where nothing changes."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(k in os.environ for k in KEEP_MEMORY_ENV):
        return False  # the user chose their own allocator settings
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    ok = libc.mallopt(_M_MMAP_MAX, 0) == 1
    return bool(ok and libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(2**31 - 1)) == 1)
