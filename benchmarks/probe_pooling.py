"""Phantom probes of trained runs at several poolings, like for like: each run's context encoder f
and its random-init twin (same config and seed) with the patch tokens average-pooled to G x G
cells (0: their mean), against the pixels pooled to the same cells. `drrkit evaluate` reports
two poolings (mean and 4x4); this asks how much of what a probe reads is the pooling's own
spatial resolution rather than the encoder.

  python benchmarks/probe_pooling.py --store unseen-phantoms.zarr --run runs/a runs/b \\
      --grids 0 2 4 8 --pixel-grids 2 4 8 16 32 [--pre-norm] [--device cuda] --out results/probe-pooling.json

Probes are drrkit's (cross-validated ridge R², paired bootstrap against random init) on the
frontal views of the store's CTs that have phantom ground truth. `--pre-norm` also probes the
tokens before the ViT's final LayerNorm, which takes each token's mean and scale away.
`--checkpoints all` probes every kept checkpoint of each run (step-XXXXXXX.pt, labelled RUN@STEP)
instead of its last one: how what the encoder reads moves over one run's training, against the
same random-init twin.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import machine_info  # noqa: E402
from drrkit.evaluate.loading import load_run, pooled_feature_sets, random_init  # noqa: E402
from drrkit.evaluate.phantom_probe import frontal_views, pixel_features, with_ground_truth  # noqa: E402
from drrkit.evaluate.probes import paired_difference, r2_probe  # noqa: E402
from drrkit.train.checkpoint import step_checkpoints, step_of  # noqa: E402
from drrkit.train.data import ProjectionViews, scan_store  # noqa: E402

TARGETS = ("heart_volume_ml", "lung_volume_ml")


def encoder_sets(encoder: torch.nn.Module, images: torch.Tensor, grids: list[int], pre_norm: bool) -> dict:
    """{"post:g<G>" (and "pre:g<G>"): features} of one encoder."""
    out = {f"post:g{g}": x.numpy() for g, x in pooled_feature_sets(encoder, images, tuple(grids)).items()}
    if pre_norm:
        norm, encoder.norm = encoder.norm, torch.nn.Identity()
        try:
            out.update({f"pre:g{g}": x.numpy() for g, x in pooled_feature_sets(encoder, images, tuple(grids)).items()})
        finally:
            encoder.norm = norm
    return out


def images_and_truth(store: Path, cfg) -> tuple[torch.Tensor, list[dict]]:
    """Frontal views (the run's input size) and ground truth of the store's CTs that have it."""
    cts = scan_store(store, cfg.data, cfg.model.action_dim)
    data = ProjectionViews(cts, cfg.data, cfg.model.img_size, cfg.seed)
    keep, rows = with_ground_truth(cts)
    if len(keep) < 8:
        raise SystemExit(f"{store}: phantom ground truth for {len(keep)} CTs; need >= 8")
    return frontal_views(data, keep), rows


def run_labels(runs: list[Path]) -> list[str]:
    """Each run's folder name, or parent/name where two runs share a name."""
    names = [r.name for r in runs]
    return [f"{r.parent.name}/{r.name}" if names.count(r.name) > 1 else r.name for r in runs]


def checkpoints_of(run: Path, which: str) -> list[tuple[str, Path | None]]:
    """[(suffix, checkpoint file)] to probe of one run: its last.pt ("", None) or each kept step file."""
    if which == "last":
        return [("", None)]
    steps = step_checkpoints(run)
    if not steps:
        raise SystemExit(f"{run}: no step-*.pt checkpoints kept (train with run.keep_checkpoints > 0)")
    return [(f"@{step_of(p)}", p) for p in steps]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, required=True, help="phantom store to probe on (e.g. unseen CTs)")
    ap.add_argument("--run", type=Path, nargs="+", required=True, help="trained run folders (drrkit train)")
    ap.add_argument("--grids", type=int, nargs="+", default=[0, 2, 4, 8])
    ap.add_argument("--pixel-grids", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    ap.add_argument("--pre-norm", action="store_true")
    ap.add_argument("--checkpoints", choices=["last", "all"], default="last",
                    help="each run's last checkpoint, or every kept step-*.pt (RUN@STEP)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="where the encoders run (probes fit on the CPU)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    features, twin, images, truth = {}, {}, None, None  # twin: f's feature name -> its random init's
    if len(set(labels := run_labels(args.run))) < len(labels):
        raise SystemExit(f"two --run folders with one name: {labels}")
    for run, label in zip(args.run, labels):
        for n, (suffix, ckpt) in enumerate(checkpoints_of(run, args.checkpoints)):
            cfg, model, _ = load_run(run, args.device, ckpt)
            images, truth = images_and_truth(args.store, cfg) if images is None else (images, truth)
            if n == 0:  # one random-init twin per run: the run's config and seed
                for key, x in encoder_sets(random_init(cfg, args.device).encoder, images, args.grids,
                                           args.pre_norm).items():
                    features[f"{label}:random_init:{key}"] = x
            for key, x in encoder_sets(model.encoder, images, args.grids, args.pre_norm).items():
                features[f"{label}{suffix}:f:{key}"] = x
                twin[f"{label}{suffix}:f:{key}"] = f"{label}:random_init:{key}"
    for g in args.pixel_grids:
        features[f"pixels:{g}x{g}"] = pixel_features(images, g).numpy()
    results = {}
    for target in TARGETS:
        y = np.array([t[target] for t in truth], dtype=float)
        probes = {name: r2_probe(x, y, args.seed) for name, x in features.items()}
        results[target] = {}
        for name, probe in probes.items():
            line = {"r2": probe.summary["r2"], "ci95": probe.summary["ci95"], "n_features": int(features[name].shape[1])}
            if name in twin:
                d = paired_difference(probe, probes[twin[name]], args.seed)
                line["minus_random_init"] = {"difference": d["difference"], "ci95": d["ci95"]}
            results[target][name] = line
            diff = line.get("minus_random_init")
            print(f"{target:16s} {name:40s} {line['n_features']:6d} R2 {line['r2']:.3f}"
                  + (f"  vs random init {diff['difference']:+.3f} [{diff['ci95'][0]:+.3f}, {diff['ci95'][1]:+.3f}]"
                     if diff else ""))
    record = {"benchmark": "probe-pooling", "machine": machine_info(), "command": " ".join(sys.argv),
              "store": str(args.store), "runs": [str(r) for r in args.run],
              "checkpoints": args.checkpoints, "n_cts": len(truth),
              "image_size": list(images.shape[-2:]), "grids": args.grids, "pixel_grids": args.pixel_grids,
              "results": results, "seconds": time.perf_counter() - t0}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1))
    print(f"written {args.out} ({record['seconds']:.0f} s)")
    return record


if __name__ == "__main__":
    main()
