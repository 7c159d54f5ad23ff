"""Pixel decoder: shapes, strides, batch independence, gradients. (Exact math: tests/test_hf_parity.py.)"""

from __future__ import annotations

import pytest
import torch

from vidseg.models.pixel_decoder import PixelDecoder

CHANNELS = {"res2": 8, "res3": 16, "res4": 24, "res5": 40}
STRIDES = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}


def _features(batch: int, height: int, width: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        name: torch.randn(batch, c, -(-height // STRIDES[name]), -(-width // STRIDES[name]), generator=gen)
        for name, c in CHANNELS.items()
    }


def _decoder(**kw) -> PixelDecoder:
    torch.manual_seed(0)
    args = dict(hidden_dim=32, mask_dim=16, num_layers=2, num_heads=4, num_points=2, ffn_dim=48)
    args.update(kw)
    return PixelDecoder(CHANNELS, STRIDES, **args).eval()


def test_output_shapes_for_odd_sizes():
    dec = _decoder()
    feats = _features(2, 100, 76, torch.Generator().manual_seed(0))  # res5 4x3, res2 25x19
    out = dec(feats)
    assert out.mask_features.shape == (2, 16, 25, 19)
    assert [tuple(m.shape) for m in out.multi_scale_features] == [(2, 32, 4, 3), (2, 32, 7, 5), (2, 32, 13, 10)]
    assert out.spatial_shapes == [(4, 3), (7, 5), (13, 10)]
    assert out.memory.shape == (2, 12 + 35 + 130, 32)
    # memory is the flattened multi-scale maps, coarse to fine.
    assert torch.equal(out.memory[:, :12], out.multi_scale_features[0].flatten(2).transpose(1, 2))
    assert torch.equal(out.memory[:, -130:], out.multi_scale_features[2].flatten(2).transpose(1, 2))


def test_samples_in_a_batch_are_independent():
    dec = _decoder()
    feats = _features(3, 64, 96, torch.Generator().manual_seed(1))
    batched = dec(feats)
    single = dec({k: v[1:2] for k, v in feats.items()})
    assert torch.allclose(batched.mask_features[1:2], single.mask_features, atol=1e-5)
    for a, b in zip(batched.multi_scale_features, single.multi_scale_features):
        assert torch.allclose(a[1:2], b, atol=1e-5)


def test_encoder_layers_mix_information_across_levels():
    # Changing only res5 must change the stride-8 map (through deformable attention and nothing else).
    dec = _decoder()
    feats = _features(1, 64, 64, torch.Generator().manual_seed(2))
    base = dec(feats).multi_scale_features[2]
    feats["res5"] = torch.randn_like(feats["res5"])
    assert not torch.allclose(dec(feats).multi_scale_features[2], base, atol=1e-4)
    no_encoder = _decoder(num_layers=0)
    feats2 = _features(1, 64, 64, torch.Generator().manual_seed(2))
    base2 = no_encoder(feats2).multi_scale_features[2]
    feats2["res5"] = torch.randn_like(feats2["res5"])
    assert torch.allclose(no_encoder(feats2).multi_scale_features[2], base2)


def test_gradients_reach_every_parameter():
    dec = _decoder().train()
    with torch.no_grad():  # the init zeroes these; make the offsets depend on the input
        for layer in dec.layers:
            layer.self_attn.sampling_offsets.weight.normal_(0, 0.05)
            layer.self_attn.attention_weights.weight.normal_(0, 0.05)
    out = dec(_features(2, 64, 64, torch.Generator().manual_seed(3)))
    loss = out.mask_features.square().mean() + sum(m.square().mean() for m in out.multi_scale_features)
    loss.backward()
    for name, p in dec.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_missing_backbone_level_is_an_error():
    with pytest.raises(ValueError, match="res3"):
        PixelDecoder({k: v for k, v in CHANNELS.items() if k != "res3"}, STRIDES)
    with pytest.raises(ValueError, match="multiple of 32"):
        PixelDecoder(CHANNELS, STRIDES, hidden_dim=48)
