"""X-WIN parts: encoder without CLS token and with fixed sin-cos positions, predictors, heads, EMA."""

import dataclasses

import torch

from drrkit.train.config import ModelConfig
from drrkit.train.masks import MaskCollator
from drrkit.train.config import MaskConfig
from drrkit.train.model import build_xwin
from drrkit.train.vit import encode, sincos_pos_embed

CFG = ModelConfig(size="tiny", img_size=48, patch_size=8, depth=2, view_predictor_depth=1,
                  masked_predictor_depth=1, decoder_depth=1, classifier_hidden=16)


def test_shapes_of_every_part():
    m = build_xwin(CFG, seed=0)
    x = torch.rand(3, 1, 48, 48)
    tokens = m.context_tokens(x)
    assert tokens.shape == (3, 36, 192) and m.encoder.cls_token is None
    z = m.predict_views(x, torch.rand(3, 2, 1))
    assert z.shape == (6, 36, 192)
    enc, pred = MaskCollator(MaskConfig(min_keep=2), 6, 0).sample_masks(3, torch.Generator().manual_seed(0))
    ctx = m.context_tokens(x, enc)
    assert ctx.shape == (3, enc.shape[1], 192)
    out = m.masked_predictor(ctx, enc, pred)
    assert out.shape == (pred.shape[0] * 3, pred.shape[2], 192)
    assert m.domain_classifier(tokens.mean(1)).shape == (3,)
    assert m.decoder(tokens).shape == (3, 1, 48, 48)


def test_position_embeddings_are_fixed_sincos():
    m = build_xwin(CFG, seed=0)
    assert not m.encoder.pos_embed.requires_grad
    assert torch.allclose(m.encoder.pos_embed[0], sincos_pos_embed(192, 6))
    assert not any(p.requires_grad for p in m.target_encoder.parameters())


def test_view_predictor_depends_on_the_action():
    m = build_xwin(CFG, seed=0)
    x = torch.rand(1, 1, 48, 48)
    a, b = m.predict_views(x, torch.tensor([[[0.0]]])), m.predict_views(x, torch.tensor([[[1.0]]]))
    assert not torch.allclose(a, b)


def test_ema_update_moves_target_toward_encoder():
    m = build_xwin(CFG, seed=0)
    with torch.no_grad():
        for p in m.encoder.parameters():
            if p.requires_grad:
                p.add_(1.0)
    before = [p.clone() for p in m.target_encoder.parameters()]
    m.update_target_encoder(0.9)
    for b, t, q in zip(before, m.target_encoder.parameters(), m.encoder.parameters()):
        assert torch.allclose(t, 0.9 * b + 0.1 * q)
    m.update_target_encoder(1.0)  # momentum 1 (end of training): frozen
    assert all(torch.equal(t, t2) for t, t2 in zip(m.target_encoder.parameters(), m.target_encoder.parameters()))


def test_init_is_seeded():
    a, b, c = build_xwin(CFG, 0), build_xwin(CFG, 0), build_xwin(dataclasses.replace(CFG), 1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["encoder.blocks.0.attn.qkv.weight"], sc["encoder.blocks.0.attn.qkv.weight"])
    x = torch.rand(2, 1, 48, 48)
    assert torch.equal(encode(a.encoder, x), encode(a.target_encoder, x))  # f' starts as a copy of f


def test_input_standardisation_is_applied_by_both_encoders_and_travels_with_the_ema_copy():
    import pytest

    plain = build_xwin(CFG, seed=0)
    normed = build_xwin(dataclasses.replace(CFG, input_mean=0.5, input_std=0.25), seed=0)
    x = torch.rand(2, 1, 48, 48)
    with torch.no_grad():
        for a, b in ((plain.encoder, normed.encoder), (plain.target_encoder, normed.target_encoder)):
            assert torch.allclose(encode(b, x), encode(a, (x - 0.5) / 0.25), atol=1e-5)
            assert not torch.allclose(encode(b, x), encode(a, x), atol=1e-3)
    assert normed.target_encoder.input_norm == (0.5, 0.25) and plain.encoder.input_norm == (0.0, 1.0)
    assert "input_norm" not in "".join(normed.encoder.state_dict())
    with pytest.raises(ValueError, match="input_std"):
        ModelConfig(input_std=0.0)
