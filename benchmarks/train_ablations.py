"""Ablations of the X-WIN trainer on phantom stores: train each variant of a base config for
the same steps, evaluate it (`drrkit evaluate`), and collect what says whether the encoder learnt
anything a probe can read: view retrieval, probes against the random-init encoder (paired
bootstrap), the features' effective rank, and how much of f' is still its initialisation.

  python benchmarks/train_ablations.py --store phantoms64.zarr [more.zarr ...] \\
      --base train-xwin-tiny-phantoms --steps 400 --workdir runs/ablate \\
      --out benchmarks/results/train-ablations-cpu-2core.json \\
      [--variant baseline ema-0.98 ...] [--set name:section.key=value[,section.key=value]] \\
      [--eval-store unseen-phantoms.zarr]

Each variant is a set of config overrides ("section.key": value, or a top-level key such as
"seed") of the base; the named ones are in VARIANTS, and `--set` adds one (values are YAML:
`optim.ema=[0.98,1.0]`). Without --variant all named variants run, or none when --set is given.
With several `--store`s (e.g. cohorts of different sizes) every variant is trained on each of
them, one run each, named `<variant>@<store name>`. A variant whose run folder holds a finished
run of the same config and steps is not trained again, only evaluated.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import machine_info  # noqa: E402

VARIANTS = {
    "baseline": {},
    "raw-input": {"model.input_mean": 0.0, "model.input_std": 1.0},  # encoders see the [0, 1] image as is
    "ema-0.98": {"optim.ema": [0.98, 1.0]},  # f' follows f faster: ~2 % of its init left at 400 steps
    "align-only-ema-0.98": {"optim.ema": [0.98, 1.0], "loss.mim": 0.0, "loss.domain": 0.0, "loss.cls": 0.0},
    "low-lr-ema-0.99": {"optim.base_lr": 0.004, "optim.ema": [0.99, 1.0]},  # peak lr / 5
    "mim-all-views": {"loss.mim_views": "all"},  # f also learns the target views (through L_MIM)
    "mim-all-views-ema-0.98": {"loss.mim_views": "all", "optim.ema": [0.98, 1.0]},
    # the release code's targets: 15° steps, 5 per context (more views of the batch share an angle)
    "yaw-step-15": {"data.target_yaw_step_deg": 15.0, "data.n_targets": 5},
    # affinity soft labels over the views of each CT only: another CT's view at the same angle stays a negative
    "affinity-volume": {"loss.affinity_scope": "volume"},
    "yaw-step-15-affinity-volume": {"data.target_yaw_step_deg": 15.0, "data.n_targets": 5,
                                    "loss.affinity_scope": "volume"},
    "seed-1": {"seed": 1},  # the baseline with another seed (init, split, batches, masks): training's own spread
}


def parse_set(text: str) -> tuple[str, dict]:
    name, _, body = text.partition(":")
    if not name or not body:
        raise SystemExit(f"--set {text!r}: expected name:section.key=value[,section.key=value]")
    overrides = {}
    for item in re.split(r",(?=\s*\w+(?:\.\w+)?\s*=)", body):  # a comma inside [a, b] stays in the value
        key, _, value = item.partition("=")
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise SystemExit(f"--set {text!r}: value of {key.strip()!r} is not YAML: {value!r}") from err
    return name, overrides


def select_variants(named: list[str] | None, extra: list[str]) -> dict[str, dict]:
    """Variants to run: the named ones (all of VARIANTS when None and no --set), then the --set ones."""
    if named is None:
        named = [] if extra else list(VARIANTS)
    unknown = [v for v in named if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; named ones: {list(VARIANTS)} (or use --set)")
    variants = {v: VARIANTS[v] for v in named}
    variants.update(parse_set(s) for s in extra)
    return variants


def variant_config(base, overrides: dict, steps: int):
    from drrkit.train.config import TrainConfig

    d = copy.deepcopy(base.to_dict())
    for key, value in overrides.items():
        section, dot, name = key.partition(".")
        if not dot and key in d and not isinstance(d[key], dict):  # a top-level key, e.g. seed
            d[key] = value
            continue
        if section not in d or not isinstance(d[section], dict) or name not in d[section]:
            raise SystemExit(f"override {key!r}: no such config key")
        d[section][name] = value
    d["optim"]["steps"] = steps
    return TrainConfig.from_dict(d, where="ablation variant")


def summarise(report: dict, seconds: float | None) -> dict:
    return {"train_seconds": seconds, "step": report["step"], "target_init_share": report.get("target_init_share"),
            "retrieval": {k: {m: v.get(m) for m in ("top1", "top5", "chance_top1", "chance_top5", "n_cts",
                                                    "identification")}
                          for k, v in report["retrieval"].items() if isinstance(v, dict) and "top1" in v},
            **{key: summarise_probes(report[key]) for key in ("probes", "probes_grid") if key in report}}


def summarise_probes(probes: dict) -> dict:
    from drrkit.evaluate.phantom_probe import above_random_init

    return {"pooling": probes.get("pooling"),
            "values": {name: {t: {"value": r.get("auroc", r.get("r2")), "ci95": r.get("ci95")} for t, r in res.items()}
                       for name, res in probes["encoders"].items()},
            "effective_rank": {name: s["effective_rank"] for name, s in probes.get("feature_spread", {}).items()},
            "above_random_init": above_random_init(probes),
            "difference_from_random_init": {
                name: {t: d and {"value": d["difference"], "ci95": d["ci95"]} for t, d in diffs.items()}
                for name, diffs in probes.get("versus_random_init", {}).items()}}


def run_names(stores: list[Path], variants: list[str]) -> list[tuple[Path, str, str]]:
    """(store, variant, run name) for every variant on every store: the run is named after the
    variant for one store, `<variant>@<store name>` for several (store names must then differ)."""
    if len(stores) == 1:
        return [(stores[0], v, v) for v in variants]
    names = [s.name.removesuffix(".zarr") for s in stores]
    if len(set(names)) != len(names):
        raise SystemExit(f"--store: several stores share a name ({names}); rename one")
    return [(s, v, f"{v}@{n}") for s, n in zip(stores, names) for v in variants]


def same_config(path: Path, cfg) -> bool:
    """Whether a run folder's config.yaml, with every default filled in, is `cfg`."""
    from drrkit.train.config import TrainConfig

    if not path.is_file():
        return False
    return TrainConfig.from_dict(yaml.safe_load(path.read_text()), where=str(path)).to_dict() == cfg.to_dict()


def run_variant(name: str, cfg, store: Path, workdir: Path, eval_stores: list[Path] | None = None) -> dict:
    from drrkit.evaluate import evaluate_run
    from drrkit.train import train

    out = workdir / name
    summary = out / "train_summary.json"
    seconds = None
    if summary.is_file() and json.loads(summary.read_text())["finished"] and same_config(out / "config.yaml", cfg):
        print(f"{name}: trained before with this config, evaluating {out} again", flush=True)
    elif out.exists():
        raise SystemExit(f"{out} holds another or an unfinished run; remove it or choose another --workdir")
    else:
        t0 = time.perf_counter()
        train(cfg, [store], out)
        seconds = time.perf_counter() - t0
        print(f"{name}: trained in {seconds:.0f} s", flush=True)
    return summarise(evaluate_run(out, stores=eval_stores), seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, nargs="+", action="extend", required=True,
                    help="phantom corpus store(s) (drrkit phantom + render); several: every variant on each")
    ap.add_argument("--base", default="train-xwin-tiny-phantoms", help="base training config (name or path)")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--workdir", type=Path, required=True, help="run folders, one per variant")
    ap.add_argument("--variant", nargs="+", action="extend", default=None,
                    help=f"named variants: {', '.join(VARIANTS)} (default: all of them, or none with --set)")
    ap.add_argument("--set", action="append", default=[], dest="extra", help="name:section.key=value[,...]")
    ap.add_argument("--eval-store", type=Path, nargs="+", default=None,
                    help="evaluate on every CT of these stores (e.g. an unseen, larger phantom cohort) instead of "
                         "the run's held-out split and its own CTs, as `drrkit evaluate --store`")
    ap.add_argument("--out", type=Path, required=True, help="JSON result")
    args = ap.parse_args()

    from drrkit.train.config import load_train_config

    variants = select_variants(args.variant, args.extra)
    base = load_train_config(args.base)
    results = {}
    for store, name, run_name in run_names(args.store, list(variants)):
        overrides = variants[name]
        results[run_name] = {"overrides": overrides, "store": str(store.resolve()),
                             **run_variant(run_name, variant_config(base, overrides, args.steps), store,
                                           args.workdir, args.eval_store)}
    record = {"benchmark": "train-ablations", "machine": machine_info(),
              "store": str(args.store[0].resolve()) if len(args.store) == 1 else None,
              "stores": [str(s.resolve()) for s in args.store],
              "eval_stores": [str(s.resolve()) for s in args.eval_store] if args.eval_store else None,
              "base_config": base.name, "base_resolved": base.to_dict(), "steps": args.steps, "variants": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1))
    for name, r in results.items():
        ret = r["retrieval"].get("trained", {})
        for key in ("probes", "probes_grid"):
            if key in r:
                print(f"{name} [{r[key]['pooling']}]: top1 {ret.get('top1', float('nan')):.3f}, "
                      f"ranks {r[key]['effective_rank']}, above random init {r[key]['above_random_init']}")


if __name__ == "__main__":
    main()
