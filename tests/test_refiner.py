"""Temporal refiner with tiny random inputs: shapes, gradients, batch independence, pooling, OMA hook."""

from __future__ import annotations

import pytest
import torch

from vidseg.models.refiner import TemporalConvLayer, TemporalRefiner

C, Q, QF, K, D, H, W, T = 16, 5, 7, 3, 8, 4, 6, 6


def make_refiner(layers: int = 2, mask_window: int = 4) -> TemporalRefiner:
    torch.manual_seed(0)
    return TemporalRefiner(C, K, D, num_layers=layers, num_heads=4, ffn_dim=32, mask_window=mask_window)


def make_inputs(b: int = 2, t: int = T, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, t, Q, C, generator=g),
        torch.randn(b, t, QF, C, generator=g),
        torch.randn(b, t, D, H, W, generator=g),
    )


def test_shapes_eval_and_train() -> None:
    refiner = make_refiner(layers=3).eval()
    inst, frame, feats = make_inputs()
    with torch.no_grad():
        out = refiner(inst, frame, feats)
    assert out.class_logits.shape == (2, Q, K + 1)
    assert out.mask_logits.shape == (2, T, Q, H, W)
    assert out.embeddings.shape == (2, T, Q, C)
    assert out.time_weights.shape == (2, T, Q)
    assert out.aux == []
    refiner.train()
    out = refiner(inst, frame, feats)
    assert len(out.aux) == 2 and out.aux[0].mask_logits.shape == (2, T, Q, H, W)
    assert refiner(inst, frame).mask_logits is None


def test_default_sizes_follow_dvis_plus_plus() -> None:
    refiner = TemporalRefiner(hidden_dim=32, num_classes=K, mask_dim=D)
    assert refiner.num_layers == 6 and len(refiner.temporal_conv) == 6
    conv = refiner.temporal_conv[0]
    assert conv.conv1.kernel_size == (5,) and conv.conv2.kernel_size == (3,)
    assert conv.conv1.padding_mode == "replicate"
    assert refiner.class_embed.in_features == 32 and refiner.activation_proj.out_features == 1


def test_gradients_reach_every_parameter_and_inputs() -> None:
    refiner = make_refiner().train()
    inst, frame, feats = make_inputs()
    inst.requires_grad_(True)
    frame.requires_grad_(True)
    out = refiner(inst, frame, feats)
    loss = out.class_logits.square().mean() + out.mask_logits.square().mean()
    loss = loss + sum(a.class_logits.mean() + a.mask_logits.mean() for a in out.aux)
    loss.backward()
    for name, p in refiner.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert inst.grad.abs().sum() > 0 and frame.grad.abs().sum() > 0


def test_outputs_do_not_depend_on_batch_composition() -> None:
    refiner = make_refiner().eval()
    inst, frame, feats = make_inputs(b=3)
    with torch.no_grad():
        full = refiner(inst, frame, feats)
        for b in range(3):
            alone = refiner(inst[b : b + 1], frame[b : b + 1], feats[b : b + 1])
            assert torch.allclose(alone.class_logits[0], full.class_logits[b], atol=1e-5)
            assert torch.allclose(alone.mask_logits[0], full.mask_logits[b], atol=1e-4)


def test_mask_window_does_not_change_masks_and_keeps_feature_device() -> None:
    inst, frame, feats = make_inputs()
    with torch.no_grad():
        a = make_refiner(mask_window=1).eval()(inst, frame, feats)
        b = make_refiner(mask_window=T).eval()(inst, frame, feats)
    assert torch.allclose(a.mask_logits, b.mask_logits, atol=1e-5)
    assert a.mask_logits.device == feats.device
    with pytest.raises(ValueError):
        TemporalRefiner(C, K, D, mask_window=0)


def test_time_weighted_pooling() -> None:
    refiner = make_refiner().eval()
    g = torch.Generator().manual_seed(1)
    normed = torch.randn(2, T, Q, C, generator=g)
    with torch.no_grad():
        pooled, weights = refiner.pool_over_time(normed)
        assert torch.allclose(weights.sum(1), torch.ones(2, Q), atol=1e-6)
        assert torch.allclose(pooled, torch.einsum("btq,btqc->bqc", weights, normed), atol=1e-6)
        # A constant activation gives the plain mean over time.
        refiner.activation_proj.weight.zero_()
        pooled, weights = refiner.pool_over_time(normed)
        assert torch.allclose(weights, torch.full((2, T, Q), 1 / T))
        assert torch.allclose(pooled, normed.mean(1), atol=1e-6)
        # An activation reading channel 0 strongly picks the frame where channel 0 is largest.
        refiner.activation_proj.weight[0, 0] = 100.0
        pooled, weights = refiner.pool_over_time(normed)
        best = normed[..., 0].argmax(1)  # [B, Q]
        picked = torch.gather(normed, 1, best[:, None, :, None].expand(2, 1, Q, C))[:, 0]
        assert torch.allclose(pooled, picked, atol=1e-3)


def test_clip_class_comes_from_pooled_embeddings() -> None:
    refiner = make_refiner().eval()
    inst, frame, feats = make_inputs()
    with torch.no_grad():
        out = refiner(inst, frame, feats)
        pooled, weights = refiner.pool_over_time(refiner.decoder_norm(out.embeddings))
        assert torch.allclose(out.class_logits, refiner.class_embed(pooled), atol=1e-5)
        assert torch.allclose(out.time_weights, weights)


def test_oma_mask_blocks_a_key() -> None:
    # Key 3 of frame 2 is blocked for every slot: changing that segmenter query must change nothing.
    refiner = make_refiner().eval()
    inst, frame, feats = make_inputs(b=1)
    mask = torch.zeros(1, T, 1, QF)
    mask[0, 2, 0, 3] = float("-inf")
    changed = frame.clone()
    changed[0, 2, 3] += 10.0
    with torch.no_grad():
        a = refiner(inst, frame, feats, attn_mask=mask)
        b = refiner(inst, changed, feats, attn_mask=mask)
        c = refiner(inst, changed, feats)
        per_row = refiner(inst, changed, feats, attn_mask=mask.expand(1, T, Q, QF))
    assert torch.allclose(a.class_logits, b.class_logits, atol=1e-6)
    assert torch.allclose(a.mask_logits, b.mask_logits, atol=1e-5)
    assert torch.allclose(b.mask_logits, per_row.mask_logits, atol=1e-6)
    assert not torch.allclose(a.class_logits, c.class_logits, atol=1e-4)


def test_temporal_conv_is_residual_and_shape_preserving() -> None:
    torch.manual_seed(0)
    layer = TemporalConvLayer(C)
    x = torch.randn(3, 2, C)  # shorter than the kernel: replicate padding still works
    assert layer(x).shape == (3, 2, C)
    with torch.no_grad():
        for conv in (layer.conv1, layer.conv2):
            conv.weight.zero_()
            conv.bias.zero_()
    assert torch.allclose(layer(x), layer.norm(x), atol=1e-6)
