"""Masked-attention decoder: predictions, masking rule, hooks. (Exact math: tests/test_hf_parity.py.)"""

from __future__ import annotations

import pytest
import torch

from vidseg.models.decoder import MaskedAttentionDecoder

DIM = 32
SIZES = [(3, 4), (6, 8), (12, 16)]


def _decoder(**kw) -> MaskedAttentionDecoder:
    torch.manual_seed(0)
    args = dict(hidden_dim=DIM, num_queries=6, num_layers=4, num_heads=4, ffn_dim=64)
    args.update(kw)
    # training mode (no dropout here): every layer's prediction; eval mode returns only the last
    return MaskedAttentionDecoder(DIM, 16, 5, **args).train()


def _inputs(batch: int = 2, seed: int = 0, channels: int = DIM):
    gen = torch.Generator().manual_seed(seed)
    feats = [torch.randn(batch, channels, h, w, generator=gen) for h, w in SIZES]
    mask_features = torch.randn(batch, 16, 24, 32, generator=gen)
    return feats, mask_features


def test_predictions_after_initial_queries_and_every_layer():
    dec = _decoder()
    feats, mf = _inputs()
    out = dec(feats, mf)
    assert len(out.predictions) == 4 + 1
    for p in out.predictions:
        assert p.class_logits.shape == (2, 6, 5)
        assert p.mask_logits.shape == (2, 6, 24, 32)
    assert out.queries.shape == out.raw_queries.shape == (2, 6, DIM)
    # The normed queries are the output LayerNorm of the raw ones, and the last prediction comes from them.
    assert torch.allclose(out.queries, dec.decoder_norm(out.raw_queries))
    assert torch.allclose(out.predictions[-1].class_logits, dec.class_head(out.queries))
    # Initial prediction: heads on the learned query features alone.
    _, first = dec.predict(dec.query_feat.weight.expand(2, -1, -1), mf)
    assert torch.allclose(out.predictions[0].mask_logits, first.mask_logits)


def test_eval_mode_returns_the_last_prediction_alone_with_the_same_values():
    dec = _decoder()
    feats, mf = _inputs()
    with torch.no_grad():
        full = dec(feats, mf)
        last = dec.eval()(feats, mf)
    assert len(last.predictions) == 1
    assert torch.allclose(last.predictions[0].class_logits, full.predictions[-1].class_logits, atol=1e-6)
    assert torch.allclose(last.predictions[0].mask_logits, full.predictions[-1].mask_logits, atol=1e-5)
    assert torch.allclose(last.raw_queries, full.raw_queries, atol=1e-6)
    # a pos_callback reads every layer's full-size masks: all predictions again
    calls = dec(feats, mf, pos_callback=lambda i, m: dec.query_embed.weight.expand(2, -1, -1))
    assert len(calls.predictions) == 4 + 1


def test_attention_mask_rule():
    dec = _decoder()
    logits = torch.full((1, 3, 4, 4), -5.0)
    logits[0, 0, :2, :2] = 5.0  # query 0: top-left quadrant
    logits[0, 1] = 5.0  # query 1: everything
    # query 2: nothing -> must be opened fully instead of blocking every key
    attend = dec.attention_mask(logits, (2, 2))
    assert attend.shape == (1, 1, 3, 4)
    assert attend[0, 0, 0].tolist() == [True, False, False, False]
    assert attend[0, 0, 1].all() and attend[0, 0, 2].all()
    # The threshold is on the sigmoid (0.5 <=> logit 0); sigmoid(1) = 0.73, sigmoid(3) = 0.95.
    dec.mask_threshold = 0.9
    logits = torch.tensor([[[[3.0, 1.0], [1.0, 1.0]]]])
    assert dec.attention_mask(logits, (2, 2))[0, 0, 0].tolist() == [True, False, False, False]


def test_masked_cross_attention_ignores_blocked_keys():
    # One query (so self-attention cannot leak), one layer reading level 0.
    dec = _decoder(num_queries=1, num_layers=1)
    feats, mf = _inputs(batch=1, seed=3)
    out = dec(feats, mf)
    blocked = ~dec.attention_mask(out.predictions[0].mask_logits, SIZES[0])[0, 0, 0]
    assert 0 < blocked.sum() < blocked.numel(), "test needs a partially blocked mask"
    changed = [f.clone() for f in feats]
    flat = changed[0].view(1, DIM, -1)
    flat[:, :, blocked] = torch.randn(1, DIM, int(blocked.sum()))
    out2 = dec(changed, mf)
    assert torch.allclose(out2.raw_queries, out.raw_queries, atol=1e-6)
    flat[:, :, ~blocked] += 1.0  # ...but visible keys do matter
    assert not torch.allclose(dec(changed, mf).raw_queries, out.raw_queries, atol=1e-4)


def test_levels_cycle_coarse_to_fine():
    # With 1 layer only level 0 (stride 32) is read; with 2 layers level 1 too, never level 2.
    dec = _decoder(num_layers=2)
    feats, mf = _inputs(seed=4)
    out = dec(feats, mf)
    changed = [feats[0], feats[1], torch.randn_like(feats[2])]
    assert torch.allclose(dec(changed, mf).raw_queries, out.raw_queries)
    changed = [feats[0], torch.randn_like(feats[1]), feats[2]]
    assert not torch.allclose(dec(changed, mf).raw_queries, out.raw_queries, atol=1e-4)


def test_external_queries_hook():
    dec = _decoder()
    feats, mf = _inputs()
    out = dec(feats, mf)
    content = dec.query_feat.weight.expand(2, -1, -1)
    pos = dec.query_embed.weight.expand(2, -1, -1)
    same = dec(feats, mf, query_content=content, query_pos=pos)
    assert torch.allclose(same.raw_queries, out.raw_queries)
    # Any number of external queries works.
    gen = torch.Generator().manual_seed(5)
    ext = dec(feats, mf, query_content=torch.randn(2, 9, DIM, generator=gen), query_pos=torch.randn(2, 9, DIM))
    assert ext.predictions[-1].mask_logits.shape == (2, 9, 24, 32)
    with pytest.raises(ValueError, match="query_pos"):
        dec(feats, mf, query_content=torch.randn(2, 9, DIM))


def test_dynamic_position_callback():
    dec = _decoder()
    feats, mf = _inputs()
    reference = dec(feats, mf)
    calls = []

    def learned_pos(layer: int, mask_logits: torch.Tensor) -> torch.Tensor:
        calls.append((layer, mask_logits))
        return dec.query_embed.weight.expand(2, -1, -1)

    out = dec(feats, mf, pos_callback=learned_pos)
    assert [c[0] for c in calls] == [0, 1, 2, 3]
    for (_, seen), pred in zip(calls, out.predictions[:-1]):
        assert torch.equal(seen, pred.mask_logits)  # it sees the latest prediction
    assert torch.allclose(out.raw_queries, reference.raw_queries)

    def mask_area_pos(layer: int, mask_logits: torch.Tensor) -> torch.Tensor:
        area = mask_logits.sigmoid().mean((2, 3))  # [B, Q]
        return area[..., None].expand(-1, -1, DIM) * (layer + 1)

    assert not torch.allclose(dec(feats, mf, pos_callback=mask_area_pos).raw_queries, reference.raw_queries)


def test_input_projection_and_variants():
    torch.manual_seed(0)
    dec = MaskedAttentionDecoder(48, 16, 3, hidden_dim=DIM, num_queries=4, num_layers=3, num_heads=4, ffn_dim=64)
    assert isinstance(dec.input_proj[0], torch.nn.Conv2d)
    feats, mf = _inputs(channels=48)
    out = dec(feats, mf)
    assert out.predictions[-1].class_logits.shape == (2, 4, 3)
    pre = _decoder(pre_norm=True)
    feats, mf = _inputs()
    assert torch.isfinite(pre(feats, mf).raw_queries).all()


def test_gradients_reach_every_parameter():
    dec = _decoder().train()
    feats, mf = _inputs()
    feats = [f.requires_grad_(True) for f in feats]
    out = dec(feats, mf)
    loss = sum(p.class_logits.square().mean() + p.mask_logits.square().mean() for p in out.predictions)
    loss.backward()
    for name, p in dec.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert feats[0].grad is not None and feats[0].grad.abs().sum() > 0
