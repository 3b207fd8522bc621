"""Host CPU seconds per CT on the corpus path, against the loaders a user would otherwise call.

A GPU corpus run is bounded by what each CT costs the host's cores (decode, table entry, writing
its images), not by the kernel: with C cores, C / (CPU-s per CT) CTs per second is a ceiling.
This measures, per compressed CT and single-threaded (time.process_time, median over the CTs):

  drrkit        drrkit.ct.read_nifti (the file's integers and rescale, or float32 HU; the file's
                voxel order)
  nibabel       nib.load(path).get_fdata(dtype=float32): the standard call
  diffdrr-read  diffdrr.data.read(path): how the X-WIN release loads a CT (torchio + density)
  table entry   CTVolume.checksum() + hu_range() (what drrkit records per CT)
  write         CorpusWriter.write_rows of the CT's views, when --store holds rendered images

and the host work of one corpus task before rendering (read, checksum, HU range) the way a Dask
worker runs it: in a task thread of a fresh process, per-thread CPU seconds (user + system: page
faults count), median over the second of two passes (steady state, as in a long run):

  task-before   glibc defaults with Dask's MALLOC_TRIM_THRESHOLD_, SHA-256 checksum, NaN/inf scan
  task-now      drrkit's worker settings (drrkit.pipeline.allocator), XXH3 checksum, integer
                voxels not scanned for NaN/inf (they cannot hold any)

with, for each, CTs per second of wall time at 1 thread and at one thread per core (threads of
one process only overlap where the work releases the GIL).

  python benchmarks/bench_ct_read.py --ct-dir DIR [--store corpus.zarr] --out results/ct-read-cpu.json

The CTs of bench_corpus.py (`--workdir W` leaves them in W/cts) are the intended input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import machine_info  # noqa: E402


def cpu_seconds(fn) -> tuple[float, object]:
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def _task_host_work(path: Path, variant: str) -> float:
    """Thread CPU seconds of what render_ct does to a CT before rendering it."""
    from drrkit.ct import read_nifti
    from drrkit.ct.volume import SHA256_PREFIX

    t0 = time.thread_time()
    ct = read_nifti(path)
    if variant == "before":
        np.isfinite(ct.hu).all()
        ct.matches_checksum(SHA256_PREFIX)  # computes the former 'sha256f:' checksum in full
        float(np.min(ct.hu)), float(np.max(ct.hu))
    else:
        ct.checksum()
        ct.hu_range()  # what render_ct records: from the stored integers, no float32 volume
    return time.thread_time() - t0


def _task_path_child(paths: list[Path], variant: str) -> None:
    """Subprocess mode: two passes over the CTs in one task thread (the second's seconds), then
    CTs per second of wall time with 1 and with as many threads as cores: whether the host work
    of concurrent tasks in one process runs in parallel (it does only where it releases the GIL)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        seconds = list(pool.map(lambda p: _task_host_work(p, variant), paths * 2))
    rate = {}
    for n in sorted({1, os.cpu_count() or 1}):
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(lambda p: _task_host_work(p, variant), paths))  # warm: n CTs in flight
            t0 = time.perf_counter()
            list(pool.map(lambda p: _task_host_work(p, variant), paths))
            rate[n] = len(paths) / (time.perf_counter() - t0)
    print(json.dumps({"seconds": seconds[len(paths):], "cts_per_second_by_threads": rate}))


def task_path(paths: list[Path]) -> tuple[dict[str, list[float]], dict[str, dict]]:
    """Per-CT host seconds of a corpus task before (Dask's and glibc's defaults, SHA-256) and now,
    and each variant's CTs per second with 1 thread and one per core."""
    import os
    import subprocess

    from benchmarks.bench_corpus import allocator_env
    from drrkit.pipeline.allocator import KEEP_MEMORY_ENV

    env = {k: v for k, v in os.environ.items() if k not in KEEP_MEMORY_ENV}
    # the defaults of a Dask worker process ("1": any --workers value other than in-process)
    envs = {"before": {**env, **allocator_env("default", "1")}, "now": {**env, **KEEP_MEMORY_ENV}}
    out, rates = {}, {}
    for variant, child_env in envs.items():
        cmd = [sys.executable, __file__, "--task-path", variant, "--out", "-", "--ct-dir", str(paths[0].parent),
               "--max-cts", str(len(paths))]
        run = subprocess.run(cmd, env=child_env, capture_output=True, text=True, check=True)
        child = json.loads(run.stdout.strip().splitlines()[-1])
        out[f"task-{variant}"], rates[f"task-{variant}"] = child["seconds"], child["cts_per_second_by_threads"]
    return out, rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ct-dir", type=Path, required=True)
    ap.add_argument("--store", type=Path, default=None, help="a store of these CTs whose images to rewrite")
    ap.add_argument("--max-cts", type=int, default=8)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--task-path", choices=["before", "now"], help=argparse.SUPPRESS)  # subprocess mode
    args = ap.parse_args()
    if args.task_path:
        return _task_path_child(sorted(args.ct_dir.glob("*.nii.gz"))[: args.max_cts], args.task_path)
    import nibabel as nib
    import torch
    from diffdrr.data import read

    from drrkit.ct import read_nifti
    from drrkit.ct.nifti import nifti_stem

    torch.set_num_threads(1)
    paths = sorted(args.ct_dir.glob("*.nii.gz"))[: args.max_cts]
    times: dict[str, list[float]] = {"drrkit": [], "nibabel": [], "diffdrr-read": [], "table entry": [], "write": []}
    writer = images = recipe = None
    if args.store:
        import zarr

        from drrkit.store import CTEntry, create_or_open, open_corpus

        corpus = open_corpus(args.store)
        recipe, images = corpus.recipe, corpus.images
        scratch = args.out.with_suffix(".scratch.zarr")
        writer = create_or_open(scratch, recipe, [CTEntry(nifti_stem(p), str(p), "nifti") for p in paths],
                                overwrite=True)
        ids = list(zarr.open_group(str(args.store), mode="r")["cts/id"][:])
    # One untimed pass first: on a fresh VM the first touch of each page of memory costs more than
    # decoding into it (0.4-0.8 s for a 315 MB volume on the dev machine, 0.04 s once reused).
    read_nifti(paths[0]), nib.load(str(paths[0])).get_fdata(dtype=np.float32), read(str(paths[0]), orientation="AP")
    for k, path in enumerate(paths):
        secs, ct = cpu_seconds(lambda: read_nifti(path))
        times["drrkit"].append(secs)
        times["table entry"].append(cpu_seconds(lambda: (ct.checksum(), ct.hu_range()))[0])
        del ct
        times["nibabel"].append(cpu_seconds(lambda: nib.load(str(path)).get_fdata(dtype=np.float32))[0])
        times["diffdrr-read"].append(cpu_seconds(lambda: read(str(path), orientation="AP"))[0])
        if writer is not None and nifti_stem(path) in ids:
            views = np.asarray(images[corpus.ct_rows(ids.index(nifti_stem(path)))])
            poses = recipe.sample_poses(nifti_stem(path))
            times["write"].append(cpu_seconds(lambda: writer.write_rows(k, views, poses))[0])
        print(path.name, {name: round(v[-1], 3) for name, v in times.items() if v}, flush=True)
    task_seconds, task_rates = task_path(paths)
    times.update(task_seconds)
    median = {name: float(np.median(v)) for name, v in times.items() if v}
    host = median["drrkit"] + median["table entry"] + median.get("write", 0.0)
    task_host = median["task-now"] + median.get("write", 0.0)
    result = {"benchmark": "ct-read", "machine": machine_info(), "cts": [str(p) for p in paths],
              "cpu_seconds_per_ct_median": median, "cpu_seconds_per_ct": times,
              "ratio_nibabel_over_drrkit": median["nibabel"] / median["drrkit"],
              "ratio_diffdrr_read_over_drrkit": median["diffdrr-read"] / median["drrkit"],
              "ratio_task_before_over_now": median["task-before"] / median["task-now"],
              "task_cts_per_second_by_threads": task_rates,
              "drrkit_host_cpu_seconds_per_ct": host,
              "drrkit_task_host_cpu_seconds_per_ct": task_host}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"drrkit read {median['drrkit']:.2f} CPU-s per CT vs nibabel {median['nibabel']:.2f} "
          f"({result['ratio_nibabel_over_drrkit']:.1f}x) vs DiffDRR read {median['diffdrr-read']:.2f} "
          f"({result['ratio_diffdrr_read_over_drrkit']:.1f}x); host path per CT {host:.2f} CPU-s; "
          f"task thread (read, checksum, range) {median['task-now']:.2f} CPU-s vs {median['task-before']:.2f} "
          f"before ({result['ratio_task_before_over_now']:.2f}x); written {args.out}")


if __name__ == "__main__":
    main()
