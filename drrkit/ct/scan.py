"""Classifying the files of a folder for discovery, in parallel processes when there are many.

Discovery reads the header of every candidate DICOM file (pydicom, pure Python: ~0.15-0.5 ms a
file, more with long vendor headers). A DICOM corpus at the scale of NLST (~32,000 series of
~200 slices) is millions of files: ~50 minutes of header parsing in one process before the first
CT renders, and again on every resume. Threads do not help (the parsing holds the GIL), so large
scans are shared out to spawned processes in contiguous chunks; the outcome is the same list, in
the same order, whatever the number of processes.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

PARALLEL_FILES = 2000  # below this a serial scan finishes before spawned processes start (~1 s)
MAX_JOBS = 16
CHUNK_FILES = 256


def auto_scan_jobs(n_files: int) -> int:
    """Processes for scanning `n_files`: 1 for small folders, else the machine's cores (at most 16)."""
    if n_files < PARALLEL_FILES:
        return 1
    return max(1, min(MAX_JOBS, os.cpu_count() or 1))


def scan_files(files: list[Path], jobs: int | None = None) -> list[tuple]:
    """One outcome per file, in order (see `scan_one`). `jobs`: processes (None = auto_scan_jobs)."""
    jobs = auto_scan_jobs(len(files)) if jobs is None else max(1, int(jobs))
    jobs = min(jobs, max(1, len(files) // CHUNK_FILES))
    if jobs == 1:
        return _scan_chunk(files)
    chunks = [files[i:i + CHUNK_FILES] for i in range(0, len(files), CHUNK_FILES)]
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return [outcome for part in pool.map(_scan_chunk, chunks) for outcome in part]


def _scan_chunk(files: list[Path]) -> list[tuple]:
    return [scan_one(path) for path in files]


def scan_one(path: Path) -> tuple:
    """("nifti",) | ("dicom", class, series uid, modality) | ("error", CTReadError) | ("skip",)."""
    from drrkit.ct.discover import classify_file

    return classify_file(path)


PARALLEL_FOLDERS = 16  # manifest rows naming DICOM folders: below this, scanned in this process


def discover_folders(folders: list[Path], jobs: int | None = None) -> list[tuple]:
    """`discover_cts(folder)` for each folder, in order, the folders shared out to processes
    (a manifest's DICOM rows). `jobs`: None = 1 below PARALLEL_FOLDERS, else the cores (at most 16)."""
    from drrkit.ct.discover import discover_cts

    if jobs is None:
        jobs = 1 if len(folders) < PARALLEL_FOLDERS else max(1, min(MAX_JOBS, os.cpu_count() or 1))
    jobs = min(max(1, int(jobs)), max(1, len(folders)))
    if jobs == 1:
        return [discover_cts(folder, jobs=1) for folder in folders]
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_discover_serially, folders, chunksize=max(1, len(folders) // (8 * jobs))))


def _discover_serially(folder: Path) -> tuple:
    from drrkit.ct.discover import discover_cts

    return discover_cts(folder, jobs=1)
