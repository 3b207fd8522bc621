"""The objective: every loss switches off (weight 0 → not computed, nor the passes only it needs)."""

import dataclasses

import pytest
import torch

from drrkit.train.data import ProjectionViews, scan_store
from drrkit.train.masks import MaskCollator
from drrkit.train.model import build_xwin
from drrkit.train.objective import XWinObjective
from drrkit.train.real import RealRadiographs

LOSSES = ("align", "affinity", "mim", "domain", "cls", "decoder")


@pytest.fixture(scope="module")
def batches(tiny_store, real_dir, fast_cfg):
    cfg = fast_cfg
    data = ProjectionViews(scan_store(tiny_store, cfg.data, 1), cfg.data, cfg.model.img_size, cfg.seed)
    real = RealRadiographs.from_folder(real_dir, cfg.model.img_size)
    sim = MaskCollator(cfg.masks, cfg.model.grid, cfg.seed, 0)([data[(0, 0, i)] for i in range(2)])
    rb = MaskCollator(cfg.masks, cfg.model.grid, cfg.seed, 1)([real[(0, 0, i)] for i in range(2)])
    return sim, rb


def calls(model):
    counts = {}
    for name in ("view_predictor", "masked_predictor", "domain_classifier", "decoder"):
        counts[name] = 0
        getattr(model, name).register_forward_pre_hook(lambda m, a, n=name: counts.__setitem__(n, counts[n] + 1))
    return counts


@pytest.mark.parametrize("off", LOSSES)
def test_each_loss_switches_off(batches, fast_cfg, off):
    model = build_xwin(fast_cfg.model, 0)
    counts = calls(model)
    objective = XWinObjective(model, dataclasses.replace(fast_cfg.loss, **{off: 0.0}))
    losses = objective(*batches)
    assert off not in losses
    expected = {k for k in LOSSES if k != off and not (off == "align" and k == "affinity")}
    assert expected <= set(losses)
    losses["total"].backward()
    assert torch.isfinite(losses["total"])
    if off == "align":
        assert counts["view_predictor"] == 0
    if off == "decoder":
        assert counts["decoder"] == 0


def test_all_off_but_align_skips_masked_passes(batches, fast_cfg):
    model = build_xwin(fast_cfg.model, 0)
    counts = calls(model)
    only_align = dataclasses.replace(fast_cfg.loss, mim=0.0, domain=0.0, cls=0.0, decoder=0.0, affinity=0.0)
    losses = XWinObjective(model, only_align)(*batches)
    assert set(losses) == {"align", "total"} and counts["masked_predictor"] == 0 and counts["decoder"] == 0


def test_total_is_the_weighted_sum_and_gradients_stop_where_they_should(batches, fast_cfg):
    model = build_xwin(fast_cfg.model, 0)
    cfg = fast_cfg.loss
    losses = XWinObjective(model, cfg)(*batches)
    expected = (cfg.align * (losses["align"] + cfg.affinity * losses["affinity"]) + cfg.mim * losses["mim"]
                + cfg.domain * losses["domain"] + cfg.cls * losses["cls"] + cfg.decoder * losses["decoder"])
    assert torch.allclose(losses["total"], expected)
    model.zero_grad()
    losses["decoder"].backward(retain_graph=True)  # decoder: stop-gradient into the encoders
    assert all(p.grad is None or not p.grad.any() for p in model.encoder.parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.decoder.parameters())
    model.zero_grad()
    losses["domain"].backward(retain_graph=True)  # domain: classifier frozen, predictor moves
    assert all(p.grad is None or not p.grad.any() for p in model.domain_classifier.parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.masked_predictor.parameters())
    model.zero_grad()
    losses["cls"].backward()  # classifier: trained on detached features only
    assert all(p.grad is None or not p.grad.any() for p in model.masked_predictor.parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.domain_classifier.parameters())


def test_no_real_batch_means_no_domain_terms(batches, fast_cfg):
    losses = XWinObjective(build_xwin(fast_cfg.model, 0), fast_cfg.loss)(batches[0], None)
    assert "domain" not in losses and "cls" not in losses and "mim" in losses


def test_mim_on_all_views_averages_context_and_each_target_with_its_cts_masks(batches, fast_cfg):
    sim, _ = batches
    model = build_xwin(fast_cfg.model, 0)
    both = XWinObjective(model, dataclasses.replace(fast_cfg.loss, mim_views="all"))(sim)
    context_only = XWinObjective(model, fast_cfg.loss)(sim)
    n = sim["targets"].size(1)
    per_view = []
    for j in range(n):  # each target view j of every CT, masked as its CT's context
        one = {**sim, "context": sim["targets"][:, j]}
        per_view.append(XWinObjective(model, fast_cfg.loss)(one)["mim"])
    expected = (context_only["mim"] + sum(per_view)) / (1 + n)  # equal token counts per view
    torch.testing.assert_close(both["mim"], expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(both["mim"], context_only["mim"])
    for k in ("align", "affinity", "decoder"):
        torch.testing.assert_close(both[k], context_only[k])
    with pytest.raises(ValueError, match="mim_views"):
        dataclasses.replace(fast_cfg.loss, mim_views="targets")


def test_volume_scoped_affinity_groups_the_views_of_each_ct(batches, fast_cfg):
    from drrkit.train import losses as L

    sim, _ = batches
    model = build_xwin(fast_cfg.model, 0).eval()
    cfg = dataclasses.replace(fast_cfg.loss, affinity_scope="volume", mim=0.0, domain=0.0, cls=0.0, decoder=0.0)
    with torch.no_grad():
        got = XWinObjective(model, cfg)(sim)["affinity"]
        batch_scope = XWinObjective(model, dataclasses.replace(cfg, affinity_scope="batch"))(sim)["affinity"]
        z = model.predict_views(sim["context"], sim["actions"]).mean(1)
        t = model.target_tokens(sim["targets"].flatten(0, 1)).mean(1)
    b, n = sim["targets"].shape[:2]
    groups = torch.arange(b).repeat_interleave(n)  # targets flattened CT-major: CT 0's views first
    torch.testing.assert_close(got, L.affinity_loss(z, t, cfg.tau, cfg.affinity_tau, groups))
    assert not torch.allclose(got, batch_scope)
    with pytest.raises(ValueError, match="affinity_scope"):
        dataclasses.replace(fast_cfg.loss, affinity_scope="ct")
