"""benchmarks/train_ablations.py: which variants run and how --set values parse into configs."""

import pytest

from benchmarks.train_ablations import VARIANTS, parse_set, select_variants, variant_config
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
            section, _, field = key.partition(".")
            got = getattr(getattr(cfg, section), field)
            assert got == (tuple(value) if isinstance(value, list) else value), (name, key)
    assert variant_config(base, VARIANTS["affinity-volume"], 5).loss.affinity_scope == "volume"
