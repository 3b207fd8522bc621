"""Phantom cohorts with and without partial volume: DiffDRR's density floor, soft-tissue density,
and what a linear read-out of the frontal DRR's pixels gets of the phantoms' 3D ground truth.

DiffDRR's density maps HU <= -800 to the smallest HU in (-800, 350]. Phantoms sampled at voxel
centres have no mixed voxels at the lung and skin boundaries, so in most of them that floor was
fat's HU and soft tissue rendered at a fraction of its density; the cohort's CTs differed in
contrast by a factor no probe target explains. This renders the frontal view (yaw 0, the X-WIN
context view) of the same cohort both ways, feeds it through the trainer's input transform
(per-image min-max, as the release's JPEGs), and probes 16x16-pooled pixels (the evaluation's
pixel baseline) for nodule presence, nodule depth, heart and lung volume, cross-validated.

    python benchmarks/phantom_contrast.py --n 128 --shape 64 --height 64 \
        --out benchmarks/results/phantom-contrast-cpu-2core.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FRONTAL = {"name": "frontal", "detector": {"sdd": 1020, "height": 64, "width": 64, "delx": 8.0, "dely": 8.0,
                                           "reverse_x_axis": True},
           "poses": {"sampling": "grid", "rotation": {"z": {"start": 0, "stop": 0, "num": 1}},
                     "translation": {"y": 700}}}


def density_floor(path: Path) -> tuple[float, float]:
    """(DiffDRR's floor: the smallest HU in (-800, 350], water's normalised density)."""
    import nibabel as nib

    hu = np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)
    floor = float(hu[(hu > -800) & (hu <= 350)].min())
    top = max(float(hu.max()), 350.0)  # bone multiplier 1 (the recipes' default)
    return floor, (0.0 - floor) / (top - floor)


def variant(root: Path, n: int, shape: int, height: int, seed: int, partial_volume: int) -> dict:
    from drrkit.evaluate.phantom_probe import pixel_features, run_probes
    from drrkit.geometry.recipe import Recipe
    from drrkit.phantom import write_cohort
    from drrkit.pipeline import RenderJob, render_corpus
    from drrkit.store import open_corpus
    from drrkit.train.transforms import to_model_input

    cts = root / f"pv{partial_volume}"
    t0 = time.perf_counter()
    rows = write_cohort(cts, n, shape=shape, seed=seed, partial_volume=partial_volume,
                        jobs=min(n, os.cpu_count() or 1))
    recipe = Recipe.from_dict({**FRONTAL, "detector": {**FRONTAL["detector"], "height": height, "width": height,
                                                       "delx": 512.0 / height, "dely": 512.0 / height}})
    store = root / f"pv{partial_volume}.zarr"
    assert render_corpus(RenderJob(recipe=recipe, out=store, ct_dir=cts, device="cpu")).exit_code == 0
    corpus = open_corpus(store)
    ids = [str(i) for i in corpus.root["cts/id"][:]]
    by_id = {r["id"]: r for r in rows}
    truth = [by_id[i] for i in ids]
    images = np.asarray(corpus.images[:], dtype=np.float32)
    floors = [density_floor(Path(r["path"])) for r in truth]
    raw_means = images.reshape(len(images), -1).mean(1)
    feats = pixel_features(to_model_input(images, 64, "minmax")).numpy()
    probes = run_probes(feats, truth, seed)
    return {"partial_volume": partial_volume, "seconds": time.perf_counter() - t0,
            "density_floor_hu": {"min": min(f for f, _ in floors), "max": max(f for f, _ in floors),
                                 "cts_above_-700": sum(f > -700 for f, _ in floors)},
            "water_density": {"min": min(w for _, w in floors), "max": max(w for _, w in floors)},
            "raw_image_mean_cv": float(raw_means.std() / raw_means.mean()),
            "pixel_probes_16x16": {k: {"metric": p.metric, **p.summary} for k, p in probes.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--shape", type=int, default=64)
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    from benchmarks.machine import machine_info

    with tempfile.TemporaryDirectory() as tmp:
        results = [variant(Path(tmp), args.n, args.shape, args.height, args.seed, pv) for pv in (1, 3)]
    report = {"benchmark": "phantom_contrast", "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "args": {k: str(v) for k, v in vars(args).items()}, "machine": machine_info(),
              "peer": "the same cohort sampled at voxel centres (partial_volume=1, drrkit before 2026-12-04)",
              "variants": results}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
