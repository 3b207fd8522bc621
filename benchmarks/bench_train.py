"""X-WIN trainer throughput: the DataLoader alone vs one training step, in images per second.

Images = contexts + target views of the simulated batch (real radiographs are left out on both
sides). The loader should outrun the step (goal: loader >= 1.5 x step) or the GPU waits on data.

    # CPU smoke run (builds a tiny phantom store when --store is not given):
    python benchmarks/bench_train.py --config train-xwin-tiny --device cpu --workers 0 2 \
        --out benchmarks/results/train-cpu-2core.json
    # The GPU machine, ViT-S/16 at 224 on a 512-pixel corpus:
    python benchmarks/bench_train.py --config train-xwin-small --store corpus.zarr --device cuda \
        --workers 4 8 12 --out benchmarks/results/train-h100.json

Writes a JSON record with the machine it ran on; prints the ratio loader/step per worker count.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drrkit.train.config import load_train_config  # noqa: E402
from drrkit.train.data import ProjectionViews, scan_store  # noqa: E402
from drrkit.train.distributed import DistInfo, resolve_device  # noqa: E402
from drrkit.train.loop import make_loader, param_groups, to_device  # noqa: E402
from drrkit.train.model import build_xwin  # noqa: E402
from drrkit.train.objective import XWinObjective  # noqa: E402


def build_store(folder: Path, n: int, height: int, views: int, device: str) -> Path:
    from drrkit.geometry.recipe import load_recipe
    from drrkit.phantom import write_cohort
    from drrkit.pipeline import RenderJob, render_corpus

    write_cohort(folder / "cts", n, shape=64, seed=0)
    recipe = load_recipe("xwin").with_height(height).with_views(views)
    render_corpus(RenderJob(recipe=recipe, out=folder / "store.zarr", ct_dir=folder / "cts", device=device))
    return folder / "store.zarr"


def loader_rate(data, cfg, workers: int, batches: int, device) -> float:
    cfg = replace(cfg, data=replace(cfg.data, num_workers=workers))
    it = iter(make_loader(data, cfg, cfg.data.batch_size, 0, DistInfo(0, 1, 0, device), stream=0))
    for _ in range(2):  # worker start-up and first reads
        next(it)
    t0 = time.perf_counter()
    images = 0
    for _ in range(batches):
        batch = next(it)
        images += batch["context"].size(0) * (1 + batch["targets"].size(1))
    return images / (time.perf_counter() - t0)


def step_rate(data, cfg, steps: int, device) -> tuple[float, dict]:
    cfg = replace(cfg, data=replace(cfg.data, num_workers=0))
    batch = to_device(next(iter(make_loader(data, cfg, cfg.data.batch_size, 0, DistInfo(0, 1, 0, device), 0))), device)
    model = build_xwin(cfg.model, cfg.seed).to(device)
    objective = XWinObjective(model, cfg.loss)
    optimizer = torch.optim.AdamW(param_groups(model), lr=1e-4)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            losses = objective(batch)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        model.update_target_encoder(0.996)

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    images = batch["context"].size(0) * (1 + batch["targets"].size(1)) * steps
    extra = {"peak_cuda_gib": torch.cuda.max_memory_allocated() / 2**30} if device.type == "cuda" else {}
    return images / (time.perf_counter() - t0), extra


def machine(device) -> dict:
    """The shared benchmarks/machine.py record, plus the device and torch threads of this run."""
    from benchmarks.machine import machine_info

    return {**machine_info(), "device": str(device), "torch_threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="train-xwin-tiny")
    ap.add_argument("--store", type=Path, help="corpus store (default: build a phantom store)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--phantoms", type=int, default=8, help="built store: CTs")
    ap.add_argument("--height", type=int, default=64, help="built store: detector rows")
    ap.add_argument("--views", type=int, default=13, help="built store: views per CT")
    ap.add_argument("--loader-only", action="store_true", help="skip the training step (e.g. a big model on CPU)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    device = resolve_device(args.device)
    cfg = load_train_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or build_store(Path(tmp), args.phantoms, args.height, args.views, str(device))
        data = ProjectionViews(scan_store(store, cfg.data, cfg.model.action_dim), cfg.data, cfg.model.img_size, cfg.seed)
        step, extra = (None, {}) if args.loader_only else step_rate(data, cfg, args.steps, device)
        loaders = {w: loader_rate(data, cfg, w, args.batches, device) for w in args.workers}
        image_shape = list(data._images(data.cts[0].store).shape[1:])
    record = {"benchmark": "bench_train", "config": cfg.name, "model": cfg.model.size, "img_size": cfg.model.img_size,
              "batch_size": cfg.data.batch_size, "n_targets": cfg.data.n_targets, "store_image_shape": image_shape,
              "step_images_per_s": step, **extra,
              "loader_images_per_s": {str(w): r for w, r in loaders.items()},
              "loader_over_step": {str(w): r / step if step else None for w, r in loaders.items()},
              "goal_loader_over_step": 1.5,
              "machine": machine(device), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for w, r in loaders.items():
        versus = f"   step {step:8.1f} img/s   ratio {r / step:5.2f}" if step else ""
        print(f"loader ({w} workers) {r:8.1f} img/s{versus}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
