"""How discovery shares out the reading of file headers: in one process, or in many.

Discovery reads the header of every candidate DICOM file (pydicom, pure Python: ~0.15-0.5 ms a
file, more with long vendor headers). A DICOM corpus at the scale of NLST (~32,000 series of
~200 slices) is millions of files: ~50 minutes of header parsing in one process before the first
CT renders, and again on every resume. Threads do not help (the parsing holds the GIL), so large
scans are shared out to spawned processes (drrkit/processes.py) in contiguous chunks; the outcome
is the same list, in the same order, whatever the number of processes.

This module holds the policy (when to go parallel, how to chunk); what a file is, and what a
folder holds, are decided in drrkit/ct/discover.py, which passes its classifier in.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

from drrkit.processes import cores, spawn_map

PARALLEL_FILES = 2000  # below this a serial scan finishes before spawned processes start (~1 s)
PARALLEL_FOLDERS = 16  # manifest rows naming DICOM folders: below this, scanned in this process
CHUNK_FILES = 256


def auto_scan_jobs(n_files: int) -> int:
    """Processes for scanning `n_files`: 1 for small folders, else the machine's cores (at most 16)."""
    return 1 if n_files < PARALLEL_FILES else cores()


def auto_folder_jobs(n_folders: int) -> int:
    """Processes for discovering `n_folders` manifest folders: 1 below PARALLEL_FOLDERS, else the
    machine's cores (at most 16)."""
    return 1 if n_folders < PARALLEL_FOLDERS else cores()


def scan_files(files: list[Path], classify: Callable[[Path], tuple], jobs: int | None = None) -> list[tuple]:
    """`classify(path)` for each file, in order. `classify` must be a module-level function (it is
    pickled to the processes). `jobs`: processes (None = auto_scan_jobs)."""
    jobs = auto_scan_jobs(len(files)) if jobs is None else max(1, int(jobs))
    jobs = min(jobs, max(1, len(files) // CHUNK_FILES))
    if jobs == 1:
        return _classify_chunk(classify, files)
    chunks = [files[i:i + CHUNK_FILES] for i in range(0, len(files), CHUNK_FILES)]
    parts = spawn_map(partial(_classify_chunk, classify), chunks, jobs=jobs)
    return [outcome for part in parts for outcome in part]


def map_folders(folders: list[Path], discover: Callable[[Path], tuple], jobs: int | None = None) -> list[tuple]:
    """`discover(folder)` for each folder, in order, the folders shared out to processes when there
    are many. `discover` must be module-level and scan in its own process (the pool's processes
    are daemonic). `jobs`: None = auto_folder_jobs."""
    jobs = auto_folder_jobs(len(folders)) if jobs is None else max(1, int(jobs))
    jobs = min(jobs, max(1, len(folders)))
    if jobs == 1:
        return [discover(folder) for folder in folders]
    return spawn_map(discover, folders, jobs=jobs, chunksize=max(1, len(folders) // (8 * jobs)))


def _classify_chunk(classify: Callable[[Path], tuple], files: list[Path]) -> list[tuple]:
    return [classify(path) for path in files]
