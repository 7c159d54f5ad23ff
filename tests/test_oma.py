"""OMA: background detection, the Eq. 8 mask, its guards and its layouts."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from vidseg.config import OMAConfig, from_dict, to_dict
from vidseg.models.attention import Attention
from vidseg.models.oma import ObjectMaskedAttention, background_keys, oma_mask


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _logits_with_no_object_prob(p_no_object: torch.Tensor, num_classes: int = 3) -> torch.Tensor:
    """Softmax logits [..., K+1] whose no-object probability is exactly p (the rest spread evenly)."""
    rest = ((1 - p_no_object) / num_classes).unsqueeze(-1).expand(*p_no_object.shape, num_classes)
    return torch.cat([rest, p_no_object.unsqueeze(-1)], -1).log()


def test_background_rules_by_hand():
    logits = _logits_with_no_object_prob(torch.tensor([[0.59, 0.6, 0.61, 0.1]]))
    assert background_keys(logits).tolist() == [[False, True, True, False]]
    # max_class: real-class probs are (0.41 / 3, 0.4 / 3, ...), all < 0.6 -> background, except a peaked one.
    peaked = torch.tensor([[[4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    assert background_keys(peaked, rule="max_class").tolist() == [[False, True]]
    sig = torch.tensor([[[2.0, -3.0], [-1.0, -2.0]]])  # max sigmoid 0.88, 0.27
    assert background_keys(sig, rule="max_class", softmax=False).tolist() == [[False, True]]
    with pytest.raises(ValueError, match="no-object"):
        background_keys(sig, softmax=False)


def test_foreground_keys_are_never_masked_and_about_d_of_background_keys_are():
    gen = _gen(1)
    background = torch.rand(400, 50, generator=gen) < 0.7
    mask = oma_mask(background, 6, drop_prob=0.5, generator=gen)
    assert mask.dropped.shape == (400, 6, 50)
    assert not mask.dropped[~background[:, None, :].expand_as(mask.dropped)].any()
    per_key = mask.dropped[:, 0, :]
    fraction = per_key[background].float().mean().item()
    assert abs(fraction - 0.5) < 0.02  # ~14 000 background keys: std 0.004


@pytest.mark.parametrize("d", [0.2, 0.7])
def test_drop_fraction_follows_d(d):
    background = torch.ones(300, 40, dtype=torch.bool)
    background[:, 0] = False  # one foreground key per frame: no row can be fully dropped
    dropped = oma_mask(background, 1, drop_prob=d, generator=_gen(2)).dropped[:, 0, 1:]
    assert abs(dropped.float().mean().item() - d) < 0.02


def test_no_row_is_ever_fully_masked():
    everything_background = torch.ones(5, 8, dtype=torch.bool)
    mask = oma_mask(everything_background, 3, drop_prob=1.0, generator=_gen(3))
    assert not mask.dropped.any()  # the guard opens the row rather than leave nothing to attend
    background = torch.rand(2000, 4, generator=_gen(4)) < 0.9
    for granularity in ("key", "row"):
        m = oma_mask(background, 5, drop_prob=0.9, granularity=granularity, generator=_gen(5))
        assert not m.dropped.all(-1).any()
        assert torch.isfinite(m.additive.amax(-1)).all()


def test_key_granularity_shares_the_draw_across_rows_and_row_granularity_does_not():
    background = torch.ones(20, 30, dtype=torch.bool)
    background[:, :2] = False
    shared = oma_mask(background, 4, generator=_gen(6)).dropped
    assert torch.equal(shared, shared[:, :1].expand_as(shared))
    per_row = oma_mask(background, 4, granularity="row", generator=_gen(6)).dropped
    assert not torch.equal(per_row, per_row[:, :1].expand_as(per_row))


def test_nothing_is_masked_at_inference_unless_masked_inference():
    logits = _logits_with_no_object_prob(torch.full((4, 10), 0.9))
    logits[:, 0] = _logits_with_no_object_prob(torch.full((4,), 0.1))
    oma = ObjectMaskedAttention(OMAConfig(enabled=True))
    assert not oma(logits, 7, training=False, generator=_gen(7)).dropped.any()
    assert oma(logits, 7, training=True, generator=_gen(7)).dropped.any()
    masked_inf = ObjectMaskedAttention(OMAConfig(enabled=True, masked_inference=True))
    assert masked_inf(logits, 7, training=False, generator=_gen(7)).dropped.any()
    disabled = ObjectMaskedAttention(OMAConfig(enabled=False))
    assert not disabled(logits, 7, training=True, generator=_gen(7)).dropped.any()


def test_additive_values_and_layouts():
    background = torch.tensor([[True, True, False], [False, True, True]])
    mask = oma_mask(background, 2, drop_prob=1.0, generator=_gen(8))
    assert mask.dropped[:, 0].tolist() == [[True, True, False], [False, True, True]]
    assert torch.equal(mask.additive == float("-inf"), mask.dropped)
    assert (mask.additive[~mask.dropped] == 0).all()
    large = oma_mask(background, 2, drop_prob=1.0, generator=_gen(8), mask_value=-1e4, dtype=torch.bfloat16)
    assert large.additive.dtype == torch.bfloat16 and large.additive.min().item() == pytest.approx(-1e4, rel=1e-2)


def test_attention_with_the_mask_equals_attention_without_the_dropped_keys():
    torch.manual_seed(0)
    attn = Attention(16, 4)  # the tracker's and refiner's cross-attention
    query, keys = torch.randn(3, 5, 16), torch.randn(3, 9, 16)
    background = torch.rand(3, 9, generator=_gen(9)) < 0.6
    background[:, 0] = False
    mask = oma_mask(background, 5, drop_prob=0.5, generator=_gen(10))
    out = attn(query, keys, keys, attn_mask=mask.additive)
    assert torch.isfinite(out).all()
    for n in range(3):
        kept = ~mask.dropped[n, 0]
        ref = attn(query[n : n + 1], keys[n : n + 1, kept], keys[n : n + 1, kept])
        torch.testing.assert_close(out[n : n + 1], ref)


def test_oma_is_parameter_free_and_gradients_are_finite():
    attn = Attention(16, 2)
    count = sum(p.numel() for p in attn.parameters())
    oma = ObjectMaskedAttention(OMAConfig(enabled=True))
    assert not isinstance(oma, nn.Module)
    logits = torch.randn(4, 6, 5)
    query, keys = torch.randn(4, 3, 16, requires_grad=True), torch.randn(4, 6, 16)
    mask = oma(logits, 3, training=True, generator=_gen(11))
    attn(query, keys, keys, attn_mask=mask.additive).sum().backward()
    assert sum(p.numel() for p in attn.parameters()) == count
    assert torch.isfinite(query.grad).all() and all(torch.isfinite(p.grad).all() for p in attn.parameters())


def test_oma_is_deterministic_given_the_generator():
    background = torch.rand(10, 20, generator=_gen(12)) < 0.5
    a = oma_mask(background, 3, generator=_gen(13)).dropped
    assert torch.equal(a, oma_mask(background, 3, generator=_gen(13)).dropped)


def test_oma_config_defaults_and_round_trip():
    cfg = OMAConfig()
    assert (cfg.drop_prob, cfg.background_threshold, cfg.masked_inference) == (0.5, 0.6, False)
    changed = dataclasses.replace(cfg, tracker=True, granularity="row")
    assert from_dict(OMAConfig, to_dict(changed)) == changed
