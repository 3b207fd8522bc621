"""Mapping a function over items in spawned worker processes, the results in input order.

Used where the work is pure Python or otherwise holds the GIL, so threads do not help: DICOM
header scans at planning (drrkit/ct/scan.py) and phantom cohorts (drrkit/phantom/cohort.py).

Spawn, not fork: callers hold threads (torch, BLAS, a Dask client) that make fork unsafe. A
spawned process re-imports the caller's main module, so a script that calls a parallel entry
point (`discover_cts` on a folder of 2,000 files or more, `plan_corpus`, `write_cohort` with
jobs > 1) must guard its top level with ``if __name__ == "__main__":``, as multiprocessing
requires. Daemonic processes (Dask and DataLoader workers) may not start processes at all: code
that runs there passes jobs=1.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

MAX_JOBS = 16  # beyond this, start-up and result pickling outweigh what more processes add


def cores(limit: int = MAX_JOBS) -> int:
    """The machine's cores, at least 1 and at most `limit`."""
    return max(1, min(int(limit), os.cpu_count() or 1))


def spawn_map(fn, *iterables, jobs: int, chunksize: int = 1) -> list:
    """`list(map(fn, *iterables))` computed by `jobs` spawned processes. `fn` and the items must
    pickle; an exception raised in a process is raised here."""
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(fn, *iterables, chunksize=chunksize))
