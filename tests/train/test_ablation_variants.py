"""benchmarks/train_ablations.py: which variants run and how --set values parse into configs."""

import pytest

from benchmarks.train_ablations import VARIANTS, parse_set, run_names, select_variants, variant_config
from drrkit.train.config import load_train_config


def test_set_values_are_yaml_and_lists_keep_their_commas():
    name, over = parse_set("v:optim.ema=[0.98, 1.0],loss.mim_views=all,model.input_std=0.1")
    assert name == "v" and over == {"optim.ema": [0.98, 1.0], "loss.mim_views": "all", "model.input_std": 0.1}
    with pytest.raises(SystemExit, match="not YAML"):
        parse_set("v:optim.ema=[0.98")
    with pytest.raises(SystemExit, match="expected name"):
        parse_set("no-body")


def test_variant_selection_and_resolved_configs():
    assert list(select_variants(None, [])) == list(VARIANTS)
    assert list(select_variants(None, ["a:loss.affinity=0"])) == ["a"]
    assert list(select_variants(["raw-input"], ["a:loss.affinity=0"])) == ["raw-input", "a"]
    with pytest.raises(SystemExit, match="unknown variants"):
        select_variants(["nope"], [])
    base = load_train_config("train-xwin-tiny-phantoms")
    cfg = variant_config(base, VARIANTS["raw-input"], steps=7)
    assert (cfg.model.input_mean, cfg.model.input_std, cfg.optim.steps) == (0.0, 1.0, 7)
    assert (base.model.input_mean, base.model.input_std) == (0.449, 0.226)
    with pytest.raises(SystemExit, match="no such config key"):
        variant_config(base, {"model.nope": 1}, steps=7)


def test_every_named_variant_resolves_to_a_valid_config():
    base = load_train_config("train-xwin-tiny-phantoms")
    for name, overrides in VARIANTS.items():
        cfg = variant_config(base, overrides, steps=5)
        for key, value in overrides.items():
            section, dot, field = key.partition(".")
            got = getattr(getattr(cfg, section), field) if dot else getattr(cfg, key)
            assert got == (tuple(value) if isinstance(value, list) else value), (name, key)
    assert variant_config(base, VARIANTS["affinity-volume"], 5).loss.affinity_scope == "volume"


def test_top_level_overrides_and_one_run_per_store(tmp_path):
    name, over = parse_set("s:seed=3,optim.ema=[0.98, 1.0]")
    assert name == "s" and over == {"seed": 3, "optim.ema": [0.98, 1.0]}
    base = load_train_config("train-xwin-tiny-phantoms")
    cfg = variant_config(base, VARIANTS["seed-1"], steps=5)
    assert (cfg.seed, base.seed, cfg.optim.steps) == (1, 0, 5)
    with pytest.raises(SystemExit, match="no such config key"):
        variant_config(base, {"nope": 1}, steps=5)
    with pytest.raises(SystemExit, match="no such config key"):
        variant_config(base, {"optim": 1}, steps=5)  # a section is not a value
    one = [tmp_path / "p128.zarr"]
    assert run_names(one, ["baseline", "seed-1"]) == [(one[0], "baseline", "baseline"), (one[0], "seed-1", "seed-1")]
    two = [tmp_path / "p128.zarr", tmp_path / "p2048.zarr"]
    assert [r[2] for r in run_names(two, ["baseline"])] == ["baseline@p128", "baseline@p2048"]
    with pytest.raises(SystemExit, match="share a name"):
        run_names([tmp_path / "a" / "p.zarr", tmp_path / "b" / "p.zarr"], ["baseline"])
