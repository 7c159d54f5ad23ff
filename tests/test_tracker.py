"""Referring tracker, its attention blocks and the denoising noiser, with tiny random inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vidseg.models.noiser import Noiser, random_shuffle_noise, weighted_average_noise
from vidseg.models.tracker import (
    Attention,
    ReferringCrossAttention,
    ReferringTracker,
    TrackerFrameOutput,
    TrackerState,
)
from vidseg.models.video import run_sequence

C, Q, K, D, H, W = 16, 6, 3, 8, 5, 7


def make_tracker(layers: int = 2, **kw) -> ReferringTracker:
    torch.manual_seed(0)
    return ReferringTracker(C, K, D, num_layers=layers, num_heads=4, ffn_dim=32, **kw)


def make_clip(b: int = 2, t: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(b, t, Q, C, generator=g)
    normed = F.layer_norm(raw, (C,))
    feats = torch.randn(b, t, D, H, W, generator=g)
    return raw, normed, feats


def track(
    tracker: ReferringTracker,
    raw: torch.Tensor,
    normed: torch.Tensor,
    feats: torch.Tensor,
    state: TrackerState | None = None,
    attn_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[list[TrackerFrameOutput], TrackerState]:
    """The tracker through a clip ([B, T, ...] inputs; attn_mask [B, T, Q or 1, Q]), frame by frame."""

    def one(t: int, st: TrackerState) -> tuple[TrackerFrameOutput, TrackerState]:
        mask = None if attn_mask is None else attn_mask[:, t]
        return tracker.forward_frame(raw[:, t], normed[:, t], feats[:, t], st, mask, generator)

    return run_sequence(one, range(raw.shape[1]), tracker.init_state() if state is None else state)


def test_shapes_eval_and_train() -> None:
    tracker = make_tracker(layers=3).eval()
    raw, normed, feats = make_clip()
    with torch.no_grad():
        outs, state = track(tracker, raw, normed, feats)
    assert len(outs) == 4 and state.frame_index == 4
    o = outs[-1]
    assert o.class_logits.shape == (2, Q, K + 1)
    assert o.mask_logits.shape == (2, Q, H, W)
    assert o.embeddings.shape == o.references.shape == (2, Q, C)
    assert o.indices.shape == (2, Q) and o.aux == []
    tracker.train()
    outs, _ = track(tracker, raw, normed, feats, generator=torch.Generator().manual_seed(0))
    assert len(outs[0].aux) == 2
    assert outs[0].aux[0].class_logits.shape == (2, Q, K + 1)


def test_default_sizes_follow_dvis_plus_plus() -> None:
    tracker = ReferringTracker(hidden_dim=32, num_classes=K, mask_dim=D)
    assert tracker.num_layers == 6 and len(tracker.cross_attn) == 6
    assert tracker.class_embed.in_features == 64  # concat[reference, normed output]
    assert tracker.ffn[0].linear1.out_features == 2048
    assert tracker.noiser.mode == "wa"


def test_gradients_reach_every_parameter() -> None:
    tracker = make_tracker().train()
    raw, normed, feats = make_clip(t=3)
    outs, _ = track(tracker, raw, normed, feats, generator=torch.Generator().manual_seed(1))
    loss = sum(o.class_logits.square().mean() + o.mask_logits.square().mean() for o in outs)
    loss = loss + sum(a.mask_logits.mean() + a.class_logits.mean() for o in outs for a in o.aux)
    loss.backward()
    for name, p in tracker.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_outputs_do_not_depend_on_batch_composition() -> None:
    tracker = make_tracker().eval()
    raw, normed, feats = make_clip(b=3)
    with torch.no_grad():
        full, _ = track(tracker, raw, normed, feats)
        for b in range(3):
            alone, _ = track(tracker, raw[b : b + 1], normed[b : b + 1], feats[b : b + 1])
            for t in range(raw.shape[1]):
                assert torch.allclose(alone[t].class_logits[0], full[t].class_logits[b], atol=1e-5)
                assert torch.allclose(alone[t].mask_logits[0], full[t].mask_logits[b], atol=1e-4)
                assert torch.equal(alone[t].indices[0], full[t].indices[b])


def test_streaming_equals_windows() -> None:
    tracker = make_tracker().eval()
    raw, normed, feats = make_clip(t=6)
    with torch.no_grad():
        clip, _ = track(tracker, raw, normed, feats)
        state = tracker.init_state()
        steps = []
        for t in range(6):
            out, state = tracker.forward_frame(raw[:, t], normed[:, t], feats[:, t], state)
            steps.append(out)
        first, mid = track(tracker, raw[:, :2], normed[:, :2], feats[:, :2])
        second, _ = track(tracker, raw[:, 2:], normed[:, 2:], feats[:, 2:], state=mid)
    for a, b, c in zip(clip, steps, first + second):
        assert torch.equal(a.class_logits, b.class_logits) and torch.equal(a.class_logits, c.class_logits)
        assert torch.equal(a.mask_logits, b.mask_logits) and torch.equal(a.embeddings, c.embeddings)
        assert torch.equal(a.indices, c.indices)


def test_association_is_seeded_by_minvis_matching() -> None:
    # Frame 1 is frame 0 shuffled: the initial slots follow the matching, keys stay in segmenter order.
    tracker = make_tracker().eval()
    raw, normed, feats = make_clip(b=1, t=1)
    perm = torch.randperm(Q, generator=torch.Generator().manual_seed(5))
    raw2 = torch.cat([raw, raw[:, :, perm]], dim=1)
    normed2 = torch.cat([normed, normed[:, :, perm]], dim=1)
    with torch.no_grad():
        outs, state = track(tracker, raw2, normed2, feats.expand(1, 2, D, H, W))
    assert torch.equal(outs[0].indices[0], torch.arange(Q))
    assert torch.equal(outs[1].indices[0], torch.argsort(perm))
    # The state keeps the current normed embeddings in slot order: slot i is frame 0's query i again.
    assert torch.allclose(state.last_embeds, normed)


def test_reference_comes_from_previous_output() -> None:
    tracker = make_tracker().eval()
    raw, normed, feats = make_clip(t=2)
    with torch.no_grad():
        outs, _ = track(tracker, raw, normed, feats)
        assert torch.allclose(outs[1].references, tracker.ref_proj(outs[0].embeddings), atol=1e-6)
        # frame 0 reads itself: its reference is the projection of its own queries
        assert torch.allclose(outs[0].references, tracker.ref_proj(raw[:, 0]), atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# Additive (OMA-style) attention mask


def test_additive_mask_blocks_a_key() -> None:
    torch.manual_seed(0)
    layer = ReferringCrossAttention(C, 4).eval()
    g = torch.Generator().manual_seed(6)
    identity, query = torch.randn(2, 5, C, generator=g), torch.randn(2, 5, C, generator=g)
    keys = torch.randn(2, Q, C, generator=g)
    mask = torch.zeros(2, 1, Q)
    mask[:, :, 2] = float("-inf")
    changed = keys.clone()
    changed[:, 2] += 10 * torch.randn(2, C, generator=g)
    with torch.no_grad():
        a = layer(identity, query, keys, keys, mask)
        b = layer(identity, query, changed, changed, mask)
        c = layer(identity, query, changed, changed)
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(a, c, atol=1e-3)


def test_tracker_accepts_a_key_mask() -> None:
    tracker = make_tracker().eval()
    raw, normed, feats = make_clip(b=1, t=2)
    mask = torch.zeros(1, 2, 1, Q)
    mask[..., -1] = float("-inf")
    with torch.no_grad():
        masked, _ = track(tracker, raw, normed, feats, attn_mask=mask)
        plain, _ = track(tracker, raw, normed, feats)
    assert torch.isfinite(masked[-1].class_logits).all()
    assert not torch.allclose(masked[-1].class_logits, plain[-1].class_logits)


def test_bool_mask_is_rejected() -> None:
    attn = Attention(C, 4)
    x = torch.randn(1, 3, C)
    with pytest.raises(TypeError, match="additive"):
        attn(x, x, x, torch.ones(1, 3, 3, dtype=torch.bool))


# ---------------------------------------------------------------------------------------------------------
# Denoising noiser


def test_weighted_average_noise_mixes_two_queries() -> None:
    # One-hot queries make the mixture readable: slot i = w_i e_i + (1 - w_i) e_pi(i).
    q = 8
    queries = torch.eye(q)[None].repeat(4, 1, 1)
    init, indices = weighted_average_noise(queries, torch.Generator().manual_seed(0))
    assert init.shape == (4, q, q) and indices.shape == (4, q)
    assert torch.allclose(init.sum(-1), torch.ones(4, q))  # convex combination of two one-hots
    for b in range(4):
        for i in range(q):
            row = init[b, i]
            support = torch.nonzero(row > 0).flatten().tolist()
            assert len(support) <= 2 and (i in support or row[i] == 0)
            w = float(row[i])  # own weight (0 only if w == 0 exactly, or pi(i) == i adds up to 1)
            partner = [j for j in support if j != i]
            if partner:
                expected = i if w >= 0.5 else partner[0]
                assert int(indices[b, i]) == expected
            else:  # pi(i) == i: whatever w, the slot is its own query
                assert int(indices[b, i]) == i


def test_weighted_average_noise_keeps_about_half_assignments() -> None:
    queries = torch.randn(64, 16, 4)
    _, indices = weighted_average_noise(queries, torch.Generator().manual_seed(1))
    kept = (indices == torch.arange(16)).float().mean()
    assert 0.4 < kept < 0.65  # P(w >= 0.5) = 0.5, plus fixed points of the permutation


def test_random_shuffle_is_a_permutation() -> None:
    queries = torch.randn(2, 5, 3)
    init, idx = random_shuffle_noise(queries, torch.Generator().manual_seed(2))
    for b in range(2):
        assert sorted(idx[b].tolist()) == list(range(5))
        assert torch.equal(init[b], queries[b, idx[b]])


def test_noiser_fires_per_video_with_the_ratio() -> None:
    queries = torch.randn(400, 4, 3)
    matched = torch.arange(4).flip(0).expand(400, 4)
    noiser = Noiser("wa", 0.3)
    out = noiser(queries, matched, torch.Generator().manual_seed(3))
    frac = out.noised.float().mean()
    assert 0.23 < frac < 0.37
    clean = ~out.noised
    assert torch.equal(out.indices[clean], matched[clean])
    assert torch.equal(out.init[clean], queries[clean][:, [3, 2, 1, 0]])
    # Same seed, same draw.
    again = noiser(queries, matched, torch.Generator().manual_seed(3))
    assert torch.equal(again.init, out.init) and torch.equal(again.indices, out.indices)


def test_noiser_extremes() -> None:
    queries = torch.randn(10, 4, 3)
    matched = torch.arange(4).expand(10, 4)
    assert not Noiser("wa", 0.0)(queries, matched).noised.any()
    assert not Noiser("none", 1.0)(queries, matched).noised.any()
    assert Noiser("wa", 1.0)(queries, matched).noised.all()
    with pytest.raises(ValueError):
        Noiser("cc", 0.5)  # type: ignore[arg-type]


def test_tracker_noise_only_in_training_and_after_frame_zero() -> None:
    tracker = make_tracker(noise_ratio=1.0, noise_mode="rs")
    raw, normed, feats = make_clip(b=1, t=1)
    raw2 = raw.repeat(1, 3, 1, 1)
    normed2 = normed.repeat(1, 3, 1, 1)
    feats2 = feats.repeat(1, 3, 1, 1, 1)
    with torch.no_grad():
        tracker.eval()
        clean, _ = track(tracker, raw2, normed2, feats2)
        tracker.train()
        noisy, _ = track(tracker, raw2, normed2, feats2, generator=torch.Generator().manual_seed(0))
    for o in clean:
        assert torch.equal(o.indices[0], torch.arange(Q))
    assert torch.equal(noisy[0].indices[0], torch.arange(Q))  # frame 0 is never noised
    assert any(not torch.equal(o.indices[0], torch.arange(Q)) for o in noisy[1:])
