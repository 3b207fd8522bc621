"""Evaluation of a trained run: retrieval + phantom probes + baselines, folder probes, export."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from drrkit.evaluate import evaluate_run, export_encoder, load_exported_encoder, load_run, pooled_features, probe_folder
from drrkit.evaluate.probes import cv_auroc, cv_r2
from drrkit.evaluate.report import evaluation_data
from drrkit.train import train
from tests.train.conftest import write_pngs


def test_identification_ranks_each_ct_against_the_others_under_the_same_action():
    from drrkit.evaluate.retrieval import identification

    g = torch.Generator().manual_seed(0)
    emb = torch.randn(5, 3, 8, generator=g)  # 5 CTs x 3 actions
    exact = [{(float(a),): (emb[c, a], emb[c, a]) for a in range(3)} for c in range(5)]
    r = identification(exact)
    assert r["top1"] == 1.0 and r["mean_normalised_rank"] == 0.0 and r["n_queries"] == 15
    # embeddings that only know the CT: one CT's views alike, CTs apart
    by_ct = [{(float(a),): (emb[c, 0], emb[c, 0] + 0.01 * emb[c, a]) for a in range(3)} for c in range(5)]
    cos = identification(by_ct)["target_cosine"]
    assert cos["same_ct"] > 0.99 and cos["same_action"] < 0.5
    assert r["chance_top1"] == pytest.approx(0.2) and r["chance_top5"] == 1.0
    shifted = [{(float(a),): (emb[(c + 1) % 5, a], emb[c, a]) for a in range(3)} for c in range(5)]
    assert identification(shifted)["top1"] == 0.0  # each CT predicts its neighbour
    # a collapsed model (the same prediction and target for every CT) ranks last, not first
    same = torch.ones(8)
    collapsed = identification([{(0.0,): (same, same)} for _ in range(4)])
    assert collapsed["top1"] == 0.0 and collapsed["mean_normalised_rank"] == 1.0
    # an action only one CT has is skipped; none shared at all says so
    partial = exact[:2] + [{(9.0,): (emb[0, 0], emb[0, 0])}]
    assert identification(partial)["n_queries"] == 6
    assert "reason" in identification([{(0.0,): (same, same)}])


def test_evaluate_reports_retrieval_probes_and_baselines(trained_run):
    run, _ = trained_run
    report = evaluate_run(run, device="cpu")
    assert json.loads((run / "evaluation.json").read_text()) == report
    # the tiny run: 30 steps of 0.996 → 1.0 leave ~94 % of f' at its initialisation
    assert report["target_init_share"] == pytest.approx(0.94, abs=0.01)
    for name in ("trained", "random_init"):
        r = report["retrieval"][name]
        assert r["n_cts"] == 2 and r["n_queries"] == 14 and r["views_per_ct"] == [7]
        assert r["chance_top1"] == pytest.approx(1 / 7) and 0.0 <= r["top1"] <= r["top5"] <= 1.0
        assert np.isfinite(r["decoded_view_psnr_db"])
        ident = r["identification"]  # 2 held-out CTs x 6 non-context views
        assert ident["n_queries"] == 12 and ident["n_actions"] == 6 and ident["chance_top1"] == pytest.approx(0.5)
        assert 0.0 <= ident["mean_normalised_rank"] <= 1.0
    probes = report["probes"]
    assert probes["n_with_ground_truth"] == 12
    assert set(probes["encoders"]) == {"trained_target", "trained_context", "random_init", "pixels_16x16"}
    for results in probes["encoders"].values():
        assert 0.0 <= results["nodule_present"]["auroc"] <= 1.0
        assert results["nodule_depth_ap_mm"]["n"] == 6 and results["heart_volume_ml"]["n"] == 12
        assert results["heart_volume_ml"]["r2"] is not None and results["lung_volume_ml"]["n"] == 12
        lo, hi = results["lung_volume_ml"]["ci95"]
        assert lo <= results["lung_volume_ml"]["r2"] <= hi
    assert set(probes["feature_spread"]) == set(probes["encoders"])
    assert all(v["effective_rank"] >= 0 for v in probes["feature_spread"].values())
    versus = probes["versus_random_init"]
    assert set(versus) == {"trained_target", "trained_context", "pixels_16x16"}
    for diffs in versus.values():
        assert set(diffs) == set(probes["metrics"])
        d = diffs["heart_volume_ml"]
        assert d["ci95"][0] <= d["ci95"][1] and 0.0 <= d["fraction_of_resamples_higher"] <= 1.0
    # the same probes on grid-pooled tokens: same encoders and cases, PROBE_GRID² times the width
    grid = report["probes_grid"]
    assert probes["pooling"].startswith("mean") and "4x4" in grid["pooling"]
    # ... plus the pixels pooled to the same 4x4 cells as the tokens
    assert set(grid["encoders"]) == set(probes["encoders"]) | {"pixels_4x4"}
    assert set(grid["versus_random_init"]) == set(versus) | {"pixels_4x4"}
    width = {name: s["dim"] for name, s in probes["feature_spread"].items()}
    assert {name: s["dim"] for name, s in grid["feature_spread"].items()} == {
        **{name: 16 * d for name, d in width.items()}, "pixels_16x16": 256, "pixels_4x4": 16}
    assert grid["encoders"]["pixels_16x16"] == probes["encoders"]["pixels_16x16"]
    assert grid["encoders"]["pixels_4x4"] != grid["encoders"]["pixels_16x16"]
    assert grid["encoders"]["random_init"] != probes["encoders"]["random_init"]


def test_grid_pooling_keeps_where_a_feature_is():
    from drrkit.evaluate.loading import pool_tokens

    tokens = torch.zeros(2, 64, 3)  # an 8x8 token grid, row-major
    tokens[0, 0, 0] = 4.0  # top-left token, channel 0
    tokens[1, 63, 0] = 4.0  # bottom-right token, channel 0
    mean = pool_tokens(tokens)
    assert torch.equal(mean[0], mean[1])  # the mean cannot tell the two apart
    cells = pool_tokens(tokens, 2).reshape(2, 4, 3)  # 2x2 cells of 4x4 tokens, cell-major
    assert cells[0, 0, 0] == cells[1, 3, 0] == 0.25 and cells[0, 1:].abs().sum() == cells[1, :3].abs().sum() == 0
    assert torch.allclose(pool_tokens(tokens, 8).reshape(2, 64, 3), tokens)
    with pytest.raises(ValueError, match="square token grid"):
        pool_tokens(torch.zeros(1, 10, 3), 2)


def test_pixel_baseline_pools_the_model_inputs():
    from drrkit.evaluate.phantom_probe import PIXEL_GRID, pixel_features

    images = torch.zeros(3, 1, 48, 48)
    images[1, 0, :24] = 1.0  # top half bright
    feats = pixel_features(images)
    assert feats.shape == (3, PIXEL_GRID * PIXEL_GRID)
    grid = feats[1].reshape(PIXEL_GRID, PIXEL_GRID)
    assert torch.all(grid[: PIXEL_GRID // 2] == 1) and torch.all(grid[PIXEL_GRID // 2:] == 0)
    assert torch.equal(pixel_features(images, 2)[1], torch.tensor([1.0, 1.0, 0.0, 0.0]))


def test_evaluation_data_of_other_stores(trained_run, tiny_store):
    run, _ = trained_run
    cfg, _, payload = load_run(run)
    held, probe_data, where = evaluation_data(run, cfg, payload, stores=[tiny_store])
    assert len(held) == len(probe_data) == 12 and "all done CTs" in where
    held, probe_data, where = evaluation_data(run, cfg, payload)
    assert len(held) == 2 and len(probe_data) == 12 and "split.json" in where


def test_evaluate_compare_with_a_mim_only_run(trained_run, tiny_store, real_dir, fast_cfg, tmp_path):
    run, _ = trained_run
    mim_only = dataclasses.replace(fast_cfg, loss=dataclasses.replace(
        fast_cfg.loss, align=0.0, affinity=0.0, domain=0.0, cls=0.0, decoder=0.0), optim=dataclasses.replace(
        fast_cfg.optim, steps=2))
    train(mim_only, [tiny_store], tmp_path / "mim", real_dir=real_dir)
    report = evaluate_run(run, compare=tmp_path / "mim", device="cpu")
    assert report["compare"]["step"] == 2
    enc = report["probes"]["encoders"]
    assert {"compare_target", "compare_context"} <= set(enc) and enc["compare_target"] != enc["trained_target"]


def test_probe_on_synthetic_folders(trained_run, tmp_path):
    run, _ = trained_run
    write_pngs(tmp_path / "data" / "clear", 8, seed=3)
    write_pngs(tmp_path / "data" / "stripe", 8, seed=4, stripe=True)
    report = probe_folder(run, tmp_path / "data", device="cpu")
    assert report["classes"] == ["clear", "stripe"] and report["n_images"] == 16
    for result in report["auroc"].values():
        assert result["auroc"] > 0.9  # a bright bar is linearly visible even to random features
    assert (run / "probe-data.json").is_file()


def test_probe_multiclass_and_degenerate_cases():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4))
    y = np.repeat([0, 1, 2], 10)
    x[:, 0] += y * 3
    assert cv_auroc(x, y)["auroc"] > 0.9
    assert cv_auroc(x[:5], np.array([0, 0, 0, 0, 1]))["auroc"] is None
    assert cv_r2(x, x[:, 0] * 2 + 1)["r2"] > 0.95 and cv_r2(x[:3], x[:3, 0])["r2"] is None


def test_exported_encoder_loads_strictly_into_timm(trained_run, tmp_path):
    import timm
    from safetensors import safe_open
    from safetensors.torch import load_file

    run, _ = trained_run
    path = tmp_path / "enc.safetensors"
    meta = export_encoder(run, path, which="target")
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["timm_model"] == meta["timm_model"] == "vit_tiny_patch16_224"
    vit = timm.create_model(meta["timm_model"], pretrained=False, **json.loads(meta["timm_kwargs"]))
    missing = vit.load_state_dict(load_file(str(path)), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    vit.eval()
    cfg, model, _ = load_run(run)
    spec = json.loads(meta["input"])  # plain timm takes the standardised image
    assert (spec["mean"], spec["std"]) == (cfg.model.input_mean, cfg.model.input_std) != (0.0, 1.0)
    x = torch.rand(3, 1, 48, 48)
    with torch.no_grad():
        expected = pooled_features(model.target_encoder, x)
        assert torch.allclose(vit((x - spec["mean"]) / spec["std"]), expected, atol=1e-5)  # global_pool='avg'
        assert torch.allclose(pooled_features(load_exported_encoder(path), x), expected, atol=1e-5)


def test_probe_scores_match_sklearn_and_intervals_cover_them():
    from sklearn.metrics import r2_score, roc_auc_score

    from drrkit.evaluate.probes import auroc_probe, r2_probe, score

    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 60)
    proba = np.round(rng.random(60), 1)  # ties on purpose
    assert score("auroc", y, np.stack([1 - proba, proba], 1)) == pytest.approx(roc_auc_score(y, proba))
    t, p = rng.normal(size=40), rng.normal(size=40)
    assert score("r2", t, p) == pytest.approx(r2_score(t, p))
    x = rng.normal(size=(80, 3))
    labels = (x[:, 0] > 0).astype(int)
    probe = auroc_probe(x, labels)
    lo, hi = probe.summary["ci95"]
    assert lo <= probe.summary["auroc"] <= hi and hi - lo < 0.2
    reg = r2_probe(x, x[:, 1] + 0.5 * rng.normal(size=80))
    assert reg.summary["ci95"][0] <= reg.summary["r2"] <= reg.summary["ci95"][1]


def test_paired_difference_separates_signal_from_noise():
    from drrkit.evaluate.probes import Probe, auroc_probe, paired_difference, score

    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 50)
    signal = labels[:, None] + 0.8 * rng.normal(size=(100, 4))
    noise = rng.normal(size=(100, 4))
    strong, weak = auroc_probe(signal, labels), auroc_probe(noise, labels)
    d = paired_difference(strong, weak)
    assert d["difference"] > 0.2 and d["ci95"][0] > 0 and d["fraction_of_resamples_higher"] > 0.99
    assert d["above"]
    same = paired_difference(weak, weak)
    assert same["difference"] == 0 and same["ci95"] == [0.0, 0.0] and not same["above"]
    # a consistent hair's breadth between two uninformative probes is not "above"
    target = rng.normal(size=100)
    far, near = (Probe("r2", {"r2": score("r2", target, p), "ci95": [-1.5, -0.5]}, target, p)
                 for p in (np.full(100, target.mean() + dx) for dx in (1.0, 1.05)))
    hair = paired_difference(far, near)
    assert hair["ci95"][0] > 0 and not hair["above"]
    with pytest.raises(ValueError, match="same cases"):
        paired_difference(strong, auroc_probe(signal[:60], labels[20:80]))


def test_multiclass_auroc_matches_sklearn_one_vs_rest_macro():
    from sklearn.metrics import roc_auc_score

    from drrkit.evaluate.probes import score

    rng = np.random.default_rng(5)
    y = np.repeat([0, 1, 2], 15)
    proba = rng.dirichlet(np.ones(3), size=45)
    assert score("auroc", y, proba) == pytest.approx(roc_auc_score(y, proba, multi_class="ovr", average="macro"))


def test_feature_spread_tells_collapsed_from_spread_features():
    from drrkit.evaluate.phantom_probe import feature_spread

    rng = np.random.default_rng(4)
    spread = feature_spread(rng.normal(size=(200, 16)))
    line = feature_spread(np.outer(rng.normal(size=200), rng.normal(size=16)) + 1e-6 * rng.normal(size=(200, 16)))
    assert 12 < spread["effective_rank"] <= 16 and spread["top_component_share"] < 0.2
    assert line["effective_rank"] < 1.1 and line["top_component_share"] > 0.999
    assert feature_spread(np.ones((5, 3)))["effective_rank"] == 0.0


def test_repeated_folds_take_the_luck_of_one_split_out_of_a_probe(monkeypatch):
    import drrkit.evaluate.probes as probes

    rng = np.random.default_rng(4)
    labels = np.repeat([0, 1], 40)
    x = rng.normal(size=(80, 24))
    x[:, 0] += 0.4 * labels  # a weak signal among noise: where one split's luck shows most
    target = x[:, 0] + np.random.default_rng(9).normal(size=80)

    def spread(repeats):  # over disjoint seeds: the probe's own dependence on how folds fall
        monkeypatch.setattr(probes, "REPEATS", repeats)
        seeds = range(0, 60, 6)
        return (np.std([probes.auroc_probe(x, labels, seed=s).summary["auroc"] for s in seeds]),
                np.std([probes.r2_probe(x, target, seed=s).summary["r2"] for s in seeds]))

    single, repeated = spread(1), spread(5)
    assert repeated[0] < 0.7 * single[0] and repeated[1] < 0.7 * single[1], (single, repeated)
    assert probes.auroc_probe(x, labels).summary["repeats"] == 5


def test_row_space_leaves_the_logistic_probe_as_it_was():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from drrkit.evaluate.probes import RowSpace

    rng = np.random.default_rng(6)
    x = rng.normal(size=(60, 400))  # more features than cases, as grid-pooled tokens
    y = (x[:, :5].sum(1) + rng.normal(size=60) > 0).astype(int)
    train, test = slice(0, 45), slice(45, 60)
    plain = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, tol=1e-10)).fit(x[train], y[train])
    reduced = make_pipeline(StandardScaler(), RowSpace(), LogisticRegression(max_iter=5000, tol=1e-10))
    reduced.fit(x[train], y[train])
    assert reduced[1].basis_.shape == (400, 44)  # 45 centred cases span 44 directions
    assert np.allclose(reduced.predict_proba(x[test]), plain.predict_proba(x[test]), atol=1e-5)
    few = rng.normal(size=(60, 8))  # fewer features than cases: left as they are
    assert np.array_equal(RowSpace().fit(few).transform(few), few)


def test_probe_pooling_benchmark_probes_each_pooling_like_for_like(trained_run, tiny_store, tmp_path):
    from benchmarks.probe_pooling import main

    run, _ = trained_run
    record = main(["--store", str(tiny_store), "--run", str(run), "--grids", "0", "2", "--pixel-grids", "2", "4",
                   "--pre-norm", "--out", str(tmp_path / "pool.json")])
    assert json.loads((tmp_path / "pool.json").read_text()) == record and record["n_cts"] == 12
    heart = record["results"]["heart_volume_ml"]
    encoders = {f"{run.name}:{w}:{n}:g{g}" for w in ("f", "random_init") for n in ("post", "pre") for g in (0, 2)}
    assert set(heart) == encoders | {"pixels:2x2", "pixels:4x4"}
    assert heart["pixels:4x4"]["n_features"] == 16 and heart[f"{run.name}:f:pre:g2"]["n_features"] == 4 * heart[f"{run.name}:f:pre:g0"]["n_features"]
    assert heart[f"{run.name}:f:pre:g2"]["r2"] != heart[f"{run.name}:f:post:g2"]["r2"]
    # only f is compared with its random-init twin, at the same pooling
    assert all(("minus_random_init" in v) == (":f:" in k) for k, v in heart.items())


def test_probe_pooling_labels_runs_that_share_a_folder_name():
    from pathlib import Path

    from benchmarks.probe_pooling import run_labels

    assert run_labels([Path("a/base"), Path("b/base"), Path("b/seed")]) == ["a/base", "b/base", "seed"]


def test_probe_pooling_probes_every_kept_checkpoint_against_one_random_init_twin(fast_cfg, tiny_store, tmp_path):
    from benchmarks.probe_pooling import main

    cfg = dataclasses.replace(fast_cfg, run=dataclasses.replace(fast_cfg.run, checkpoint_every=2, keep_checkpoints=2))
    run = tmp_path / "two"
    train(cfg, [tiny_store], run)
    common = ["--store", str(tiny_store), "--run", str(run), "--grids", "0", "--pixel-grids", "2"]
    every = main([*common, "--checkpoints", "all", "--out", str(tmp_path / "all.json")])
    last = main([*common, "--out", str(tmp_path / "last.json")])
    heart, heart_last = every["results"]["heart_volume_ml"], last["results"]["heart_volume_ml"]
    assert set(heart) == {"two@2:f:post:g0", "two@4:f:post:g0", "two:random_init:post:g0", "pixels:2x2"}
    assert every["checkpoints"] == "all" and last["checkpoints"] == "last"
    # step 4 is the last checkpoint; step 2 is another encoder; both against the same twin
    assert heart["two@4:f:post:g0"]["r2"] == heart_last["two:f:post:g0"]["r2"]
    assert heart["two@2:f:post:g0"]["r2"] != heart["two@4:f:post:g0"]["r2"]
    assert heart["two:random_init:post:g0"] == heart_last["two:random_init:post:g0"]
    assert all(("minus_random_init" in v) == (":f:" in k) for k, v in heart.items())


def test_probe_pooling_says_when_a_run_kept_no_step_checkpoints(tmp_path):
    from benchmarks.probe_pooling import checkpoints_of

    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    assert checkpoints_of(tmp_path / "run", "last") == [("", None)]
    with pytest.raises(SystemExit, match="no step-.*keep_checkpoints"):
        checkpoints_of(tmp_path / "run", "all")
