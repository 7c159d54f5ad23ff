"""Local2Global building blocks: Mask2Box, box sine PE, top-K query selection, aligner, reduced supervision."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from vidseg.config import L2GConfig, from_dict, to_dict
from vidseg.models.aligner import L2GAligner
from vidseg.models.boxes import BoxPositionEmbedding, mask_to_box
from vidseg.models.position import box_sine_embedding
from vidseg.models.query_selection import TwoStageQuerySelector
from vidseg.training.reduced_supervision import supervised_frames

# ---------------------------------------------------------------------------------------------------------
# Mask2Box


def _reference_box(mask: torch.Tensor) -> list[float]:
    ys, xs = mask.nonzero(as_tuple=True)
    h, w = mask.shape
    x0, x1, y0, y1 = xs.min().item(), xs.max().item() + 1, ys.min().item(), ys.max().item() + 1
    return [(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h]


def test_mask_to_box_empty_and_degenerate_masks():
    masks = torch.zeros(5, 8, 10, dtype=torch.bool)
    masks[1, 3, 4] = True  # one pixel
    masks[2, 5, :] = True  # one full row
    masks[3, :, 0] = True  # one column on the border
    masks[4] = True  # everything
    boxes = mask_to_box(masks)
    expected = [
        [0.5, 0.5, 1.0, 1.0],  # empty -> the whole image
        [4.5 / 10, 3.5 / 8, 1 / 10, 1 / 8],
        [0.5, 5.5 / 8, 1.0, 1 / 8],
        [0.5 / 10, 0.5, 1 / 10, 1.0],
        [0.5, 0.5, 1.0, 1.0],
    ]
    torch.testing.assert_close(boxes, torch.tensor(expected))
    assert (boxes[:, 2:] > 0).all() and ((boxes >= 0) & (boxes <= 1)).all()
    custom = mask_to_box(torch.zeros(2, 4, 4, dtype=torch.bool), empty_box=(0.0, 0.0, 0.0, 0.0))
    assert torch.equal(custom, torch.zeros(2, 4))


def test_mask_to_box_matches_a_brute_force_reference_on_random_masks():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 12, 9, generator=gen) - 1.5  # logits, binarised at 0
    boxes = mask_to_box(logits)
    assert boxes.shape == (2, 6, 4) and not boxes.requires_grad
    for b in range(2):
        for q in range(6):
            fg = logits[b, q] > 0
            ref = _reference_box(fg) if fg.any() else [0.5, 0.5, 1.0, 1.0]
            torch.testing.assert_close(boxes[b, q], torch.tensor(ref))


def test_mask_to_box_rejects_non_masks():
    with pytest.raises(ValueError, match="H, W"):
        mask_to_box(torch.zeros(5))


# ---------------------------------------------------------------------------------------------------------
# Box sine embedding


def test_box_sine_embedding_shapes_and_order():
    boxes = torch.tensor([[0.2, 0.7, 0.1, 0.4]])  # cx, cy, w, h
    emb = box_sine_embedding(boxes)
    assert emb.shape == (1, 512)
    # Channels 0/1 of each 128-block are sin/cos of 2*pi*v at frequency 1: order (cy, cx, w, h).
    for block, v in enumerate([0.7, 0.2, 0.1, 0.4]):
        assert emb[0, 128 * block].item() == pytest.approx(math.sin(2 * math.pi * v), abs=1e-5)
        assert emb[0, 128 * block + 1].item() == pytest.approx(math.cos(2 * math.pi * v), abs=1e-5)
    # Each block depends on its coordinate only.
    moved = box_sine_embedding(torch.tensor([[0.9, 0.7, 0.1, 0.4]]))
    changed = (moved != emb).reshape(4, 128).any(-1)
    assert changed.tolist() == [False, True, False, False]
    assert box_sine_embedding(torch.rand(2, 3, 4)).shape == (2, 3, 512)


def test_box_position_embedding_mlp_and_from_masks():
    pe = BoxPositionEmbedding(32)
    assert pe.mlp.layers[0].in_features == 512 and len(pe.mlp.layers) == 2
    masks = torch.zeros(2, 5, 16, 16)
    masks[:, :, 4:8, 2:10] = 1.0
    out = pe.from_masks(masks)
    assert out.shape == (2, 5, 32)
    torch.testing.assert_close(out, pe(mask_to_box(masks)))
    out.sum().backward()
    assert all(p.grad is not None for p in pe.parameters())


# ---------------------------------------------------------------------------------------------------------
# Two-stage query selection


class _FixedLogits(nn.Module):
    """A class head that returns hand-built logits, to check which tokens the selector gathers."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits + 0 * x[..., :1]


def test_top_k_selection_gathers_the_right_tokens():
    torch.manual_seed(0)
    b, n, c, k = 2, 12, 8, 3
    logits = torch.full((b, n, 4), -5.0)
    # Sample 0: best tokens 7 (class 2), 2 (class 0), 11 (class 3). Sample 1: 0, 5, 9.
    for batch, picks in enumerate([[(7, 2, 3.0), (2, 0, 2.0), (11, 3, 1.0)], [(0, 1, 9.0), (5, 0, 4.0), (9, 2, 0.5)]]):
        for token, cls, value in picks:
            logits[batch, token, cls] = value
    selector = TwoStageQuerySelector(c, 4, k, class_head=_FixedLogits(logits))
    memory = torch.randn(b, n, c, requires_grad=True)
    out = selector(memory)
    assert out.indices.tolist() == [[7, 2, 11], [0, 5, 9]]
    assert out.scores.tolist() == [[3.0, 2.0, 1.0], [9.0, 4.0, 0.5]]
    projected = selector.norm(selector.proj(memory))
    for batch in range(b):
        torch.testing.assert_close(out.tokens[batch], projected[batch, out.indices[batch]])
        torch.testing.assert_close(out.class_logits[batch], logits[batch, out.indices[batch]])
    assert out.content.shape == (b, k, c) and not out.content.requires_grad
    torch.testing.assert_close(out.pos, selector.query_pos.weight.expand(b, k, c))
    # The supervised tokens/logits carry gradient back to the encoder and the heads.
    (out.tokens.sum() + out.class_logits.sum()).backward()
    assert memory.grad is not None and selector.proj.weight.grad is not None
    assert selector.class_head.logits.grad is not None


def test_selection_skips_invalid_tokens_and_can_keep_content_gradient():
    torch.manual_seed(1)
    logits = torch.arange(10.0).view(1, 10, 1)
    valid = torch.ones(1, 10, dtype=torch.bool)
    valid[0, 9] = valid[0, 7] = False
    selector = TwoStageQuerySelector(4, 1, 3, class_head=_FixedLogits(logits), detach_content=False)
    out = selector(torch.randn(1, 10, 4), valid)
    assert out.indices.tolist() == [[8, 6, 5]] and out.content.requires_grad
    with pytest.raises(ValueError, match="cannot select"):
        TwoStageQuerySelector(4, 1, 11)(torch.randn(1, 10, 4))


def test_default_class_head_starts_at_the_focal_prior():
    selector = TwoStageQuerySelector(8, 5, 4)
    torch.testing.assert_close(selector.class_head.bias, torch.full((5,), -math.log(99.0)))
    out = selector(torch.randn(2, 20, 8))
    assert out.class_logits.shape == (2, 4, 5) and out.indices.shape == (2, 4)


# ---------------------------------------------------------------------------------------------------------
# L2G-aligner


def _aligner_inputs(b=2, q=5, k=7, c=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(b, n, c, generator=gen) for n in (q, k, q, k)]


def test_aligner_shapes_layers_and_width():
    aligner = L2GAligner(32, num_layers=3, num_heads=4, ffn_dim=64)
    out = aligner(*_aligner_inputs())
    assert out.queries.shape == (2, 5, 32) and len(out.intermediate) == 3
    assert out.intermediate[-1] is out.queries
    assert L2GAligner().layers[0].linear1.out_features == 1024
    counts = {d: sum(p.numel() for p in L2GAligner(ffn_dim=d).parameters()) for d in (512, 1024, 2048)}
    assert counts[512] < counts[1024] < counts[2048]
    assert 3.0e6 < counts[1024] < 3.4e6  # the paper's 3.2 M


def test_aligner_gradients_reach_every_input_and_parameter():
    aligner = L2GAligner(32, num_layers=2, num_heads=4, ffn_dim=64)
    inputs = [t.requires_grad_() for t in _aligner_inputs()]
    aligner(*inputs).queries.pow(2).sum().backward()
    for t in inputs:
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in aligner.parameters())


def test_aligner_attends_only_to_valid_local_keys_and_treats_them_as_a_set():
    torch.manual_seed(2)
    aligner = L2GAligner(32, num_layers=2, num_heads=4, ffn_dim=64).eval()
    g, l, gp, lp = _aligner_inputs(seed=3)
    valid = torch.ones(2, 7, dtype=torch.bool)
    valid[:, 4:] = False
    base = aligner(g, l, gp, lp, valid).queries
    # Changing ignored local keys changes nothing; changing a valid one changes the output.
    l2 = l.clone()
    l2[:, 5] += 10.0
    torch.testing.assert_close(aligner(g, l2, gp, lp, valid).queries, base)
    l3 = l.clone()
    l3[:, 1] += 1.0
    assert not torch.allclose(aligner(g, l3, gp, lp, valid).queries, base)
    # Equivalent to running on the valid keys only.
    torch.testing.assert_close(aligner(g, l[:, :4], gp, lp[:, :4]).queries, base, rtol=1e-4, atol=1e-5)
    # Local queries are a set: permuting them (with their PE) leaves the output unchanged.
    perm = torch.randperm(7)
    full = aligner(g, l, gp, lp).queries
    torch.testing.assert_close(aligner(g, l[:, perm], gp, lp[:, perm]).queries, full, rtol=1e-4, atol=1e-5)
    # Global queries keep their identity: permuting them permutes the output the same way.
    qperm = torch.randperm(5)
    torch.testing.assert_close(aligner(g[:, qperm], l, gp[:, qperm], lp).queries, full[:, qperm], rtol=1e-4, atol=1e-5)
    # A sample with no valid local key attends to all of them (no NaN).
    none_valid = torch.zeros(2, 7, dtype=torch.bool)
    assert torch.isfinite(aligner(g, l, gp, lp, none_valid).queries).all()


# ---------------------------------------------------------------------------------------------------------
# Reduced supervision


@settings(max_examples=200, deadline=None)
@given(num_frames=st.integers(1, 12), seed=st.integers(0, 2**31 - 1), min_frames=st.integers(1, 4))
def test_reduced_supervision_keeps_the_last_frame_and_enough_frames(num_frames, seed, min_frames):
    keep = supervised_frames(num_frames, min_frames=min_frames, generator=torch.Generator().manual_seed(seed))
    assert keep.shape == (num_frames,) and keep.dtype == torch.bool
    assert keep[-1]
    assert int(keep.sum()) >= min(min_frames, num_frames)
    if num_frames > min_frames:
        assert int(keep.sum()) < num_frames  # "skip one or multiple frames"


def test_reduced_supervision_default_keeps_at_least_two_and_every_earlier_frame_can_be_skipped():
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([supervised_frames(5, generator=gen) for _ in range(400)])
    assert draws[:, -1].all() and (draws.sum(1) >= 2).all()
    skip_rate = 1 - draws[:, :-1].float().mean(0)
    assert (skip_rate > 0.2).all()  # no earlier frame is privileged
    assert supervised_frames(5, enabled=False).all() and supervised_frames(2, generator=gen).all()
    with pytest.raises(ValueError):
        supervised_frames(0)


def test_l2g_config_defaults_and_round_trip():
    cfg = L2GConfig()
    assert (cfg.aligner_layers, cfg.aligner_ffn_dim, cfg.local_pe, cfg.min_supervised_frames) == (3, 1024, "static", 2)
    changed = dataclasses.replace(cfg, aligner=False, local_pe="dynamic", num_local_queries=50)
    assert from_dict(L2GConfig, to_dict(changed)) == changed
