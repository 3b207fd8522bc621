"""Linear probes of frozen frontal-view features against phantom ground truth that only 3D
knowledge reveals: is there a nodule (AUROC), how deep is it along the AP axis (R², cases with a
nodule), how large are the heart and the lungs (R², volumes in ml).

Every report also probes the pixels themselves (the model input average-pooled to 16x16): what a
linear read-out of the image alone reaches, so an encoder's number can be judged against it; a
grid-pooled report adds the pixels pooled to its own cells (`pixels_4x4`), like for like. On
128 phantoms (128^3) at 112^2, measured on the CPU: pixels give heart R^2 ~0.3-0.45 and lung R^2
~0.6 from the frontal view, but nodule presence (AUROC ~0.5) and depth (R^2 < 0) not even from the
lateral view: those two need features a linear read-out of pixels does not have.

Two poolings of each encoder's patch tokens, each in its own report (`probes`, `probes_grid`):
their mean (I-JEPA's linear-probe input) and the token grid average-pooled to PROBE_GRID x
PROBE_GRID cells, concatenated. The mean keeps what is in the image but not where, and organ
sizes are largely where: on 512 unseen phantoms (128^3, frontal views at 64^2, CPU, 2026-12-02)
going from mean to 4x4 cells took heart R^2 from ~0.01 to ~0.25 and lung R^2 from ~0.6 to ~0.9
for the random-init and the trained encoders alike, while a linear read-out of 8x8 or 16x16
pixels gave heart 0.50-0.68 and lung 0.84-0.92. At the same cells the encoders read more than
the pixels: 4x4 pixels gave heart 0.05 and lung 0.54, and every token (8x8 at 64^2, patch 8) gave
the encoders heart 0.56-0.60 against 0.50 for 8x8 pixels (2026-12-03, benchmarks/README.md,
"Pooling, like for like"). Nodule presence was at chance for every feature
set, pixels included (AUROC 0.49-0.54): at 64^2 a 8-20 mm nodule spans 1.5-3.6 pixels.

`feature_spread` says, per encoder, over how many directions the CTs' features spread (RankMe's
effective rank and the first principal component's share of the variance).

`versus_random_init` gives, per encoder and target, the metric's difference from the random-init
encoder on the same cases with a paired-bootstrap 95 % interval (probes.paired_difference): an
encoder is above random init on a target only where that interval lies above 0 and its own score's
interval lies above chance (AUROC 0.5, R² 0): `above`.

Ground truth comes from the phantoms.csv next to each CT file (drrkit.phantom.write_cohort), found
through the store's cts/source and matched by path (else by CT id). CTs without ground truth are
left out. Probes run on every CT given (the encoders never saw labels; the folds keep probe
training and testing apart).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from drrkit.evaluate.loading import PROBE_GRID, pooled_feature_sets
from drrkit.evaluate.probes import Probe, auroc_probe, paired_difference, r2_probe
from drrkit.phantom.cohort import CSV_NAME, read_cohort_csv
from drrkit.store import source_path
from drrkit.train.data import CTViews, ProjectionViews

TARGETS = {"nodule_present": "auroc", "nodule_depth_ap_mm": "r2", "heart_volume_ml": "r2", "lung_volume_ml": "r2"}
BASELINE = "random_init"  # the encoder every other one is compared with (paired bootstrap)
PIXEL_GRID = 16  # the pixel baseline: model inputs average-pooled to PIXEL_GRID x PIXEL_GRID


def ground_truth(cts: list[CTViews]) -> list[dict | None]:
    """The phantoms.csv row of each CT, or None where there is none."""
    tables: dict[Path, list[dict]] = {}
    out = []
    for ct in cts:
        source = source_path(ct.source, ct.store)
        csv = source.parent / CSV_NAME
        if csv not in tables:
            tables[csv] = read_cohort_csv(csv) if csv.is_file() else []
        rows = tables[csv]
        src = str(source.resolve())
        match = [r for r in rows if str(Path(r["path"]).resolve()) == src] or [r for r in rows if r["id"] == ct.ct_id]
        out.append(match[0] if match else None)
    return out


def with_ground_truth(cts: list[CTViews]) -> tuple[list[int], list[dict]]:
    """(indices, phantoms.csv rows) of the CTs that have ground truth."""
    truth = ground_truth(cts)
    keep = [i for i, t in enumerate(truth) if t is not None]
    return keep, [truth[i] for i in keep]


def frontal_views(data: ProjectionViews, indices: list[int]) -> torch.Tensor:
    """The context (frontal) view of each CT, as model inputs (K, C, H, W)."""
    return torch.cat([data.read(data.cts[i], np.array([data.cts[i].context])) for i in indices])


def run_probes(features: np.ndarray, truth: list[dict], seed: int) -> dict[str, Probe]:
    present = np.array([bool(t["nodule_present"]) for t in truth])
    depth = np.array([t["nodule_depth_ap_mm"] for t in truth], dtype=np.float64)
    heart = np.array([t["heart_volume_ml"] for t in truth], dtype=np.float64)
    lung = np.array([t["lung_volume_ml"] for t in truth], dtype=np.float64)
    with_nodule = present & np.isfinite(depth)
    return {"nodule_present": auroc_probe(features, present.astype(int), seed),
            "nodule_depth_ap_mm": r2_probe(features[with_nodule], depth[with_nodule], seed),
            "heart_volume_ml": r2_probe(features, heart, seed),
            "lung_volume_ml": r2_probe(features, lung, seed)}


def feature_spread(features: np.ndarray) -> dict:
    """How many directions the CTs' features spread over: RankMe's effective rank (exp of the
    entropy of the normalised singular values of the centred features, Garrido et al. 2023) and
    the share of variance on the first principal component. An encoder whose frontal features
    lie near one line (effective rank ~1-2, top share ~0.99: collapse) leaves a linear probe
    little to read, whatever the training loss says."""
    centred = features.astype(np.float64) - features.mean(axis=0)
    s = np.linalg.svd(centred, compute_uv=False)
    if not s.sum() > 0:
        return {"effective_rank": 0.0, "top_component_share": None, "dim": int(features.shape[1])}
    p = s / s.sum()
    rank = float(np.exp(-np.sum(p * np.log(np.where(p > 0, p, 1.0)))))
    return {"effective_rank": rank, "top_component_share": float(s[0] ** 2 / np.sum(s ** 2)),
            "dim": int(features.shape[1])}


def pixel_features(images: torch.Tensor, grid: int = PIXEL_GRID) -> torch.Tensor:
    """The pixel baseline: images (K, C, H, W) average-pooled to grid x grid cells, flattened."""
    return torch.nn.functional.adaptive_avg_pool2d(images.float(), grid).flatten(1)


def pixel_baselines(images: torch.Tensor, grid: int) -> dict[str, np.ndarray]:
    """The pixel baselines of one report: PIXEL_GRID² pixels in every report, and in a grid-pooled
    one also the pixels pooled to the same grid x grid cells as the tokens (like for like)."""
    cells = [PIXEL_GRID] + ([grid] if grid and grid != PIXEL_GRID else [])
    return {f"pixels_{g}x{g}": pixel_features(images, g).numpy() for g in cells}


def pooling_name(grid: int) -> str:
    return "mean of the patch tokens" if grid == 0 else \
        f"patch tokens average-pooled to {grid}x{grid} cells, concatenated"


def report_key(grid: int) -> str:
    """Where the probes of one pooling go in evaluation.json: `probes` (mean) or `probes_grid`."""
    return "probes" if grid == 0 else "probes_grid"


def phantom_probes(data: ProjectionViews, encoders: dict[str, torch.nn.Module], seed: int = 0,
                   grids: tuple[int, ...] = (0, PROBE_GRID)) -> dict[str, dict]:
    """Probe results per encoder, one report per pooling of the frontal views' patch tokens
    ({report_key(grid): report}); each image is encoded once, and every report carries the same
    pixel baseline so that it reads on its own."""
    keep, rows = with_ground_truth(data.cts)
    heads = {g: {"n_cts": len(data.cts), "n_with_ground_truth": len(keep), "pooling": pooling_name(g),
                 "metrics": TARGETS, "encoders": {}} for g in grids}
    if len(keep) < 4:
        for head in heads.values():
            head["reason"] = f"ground truth (phantoms.csv next to the CT files) for {len(keep)} CTs; need >= 4"
        return {report_key(g): head for g, head in heads.items()}
    images = frontal_views(data, keep)
    sets = {name: pooled_feature_sets(enc, images, grids) for name, enc in encoders.items()}
    return {report_key(g): _probe_report(heads[g], {**{name: f[g].numpy() for name, f in sets.items()},
                                                    **pixel_baselines(images, g)}, rows, seed)
            for g in grids}


def above_random_init(probes: dict) -> dict[str, list[str]]:
    """{encoder: targets on which it is `above` random init} of one probe report."""
    return {name: [t for t, d in diffs.items() if d and d["above"]]
            for name, diffs in probes.get("versus_random_init", {}).items()}


def _probe_report(report: dict, features: dict[str, np.ndarray], rows: list[dict], seed: int) -> dict:
    probes = {name: run_probes(f, rows, seed) for name, f in features.items()}
    report["encoders"] = {name: {t: p.summary for t, p in results.items()} for name, results in probes.items()}
    report["feature_spread"] = {name: feature_spread(f) for name, f in features.items()}
    if BASELINE in probes:  # is an encoder above the random-init one, beyond resampling noise?
        report["versus_random_init"] = {
            name: {t: paired_difference(p, probes[BASELINE][t], seed) for t, p in results.items()}
            for name, results in probes.items() if name != BASELINE}
    return report
