"""MinVIS association: Hungarian on cosine similarity, chained to the previous reordered frame."""

from __future__ import annotations

import math

import torch

from vidseg.models.association import cosine_cost, match_queries, reorder
from vidseg.models.minvis import MinVIS
from vidseg.models.outputs import SegmenterOutput
from vidseg.models.video import run_sequence


def _chain(x: torch.Tensor) -> torch.Tensor:
    """MinVIS over embeddings [B, T, Q, C] -> the segmenter query of each slot per frame, [B, T, Q]."""
    b, t, q, _ = x.shape
    segs = [SegmenterOutput(queries=x[:, i], raw_queries=x[:, i], class_logits=torch.zeros(b, q, 2),
                            mask_logits=torch.zeros(b, q, 1, 1)) for i in range(t)]
    minvis = MinVIS()
    frames, _ = run_sequence(minvis.track, segs, minvis.init_state())
    return torch.stack([f.indices for f in frames], dim=1)


def test_recovers_known_permutation() -> None:
    g = torch.Generator().manual_seed(0)
    frame0 = torch.randn(1, 12, 8, generator=g)
    perm = torch.randperm(12, generator=g)
    # frame1[j] = frame0[perm[j]] (plus small noise and a rescale cosine ignores)
    frame1 = 3.0 * frame0[:, perm] + 0.01 * torch.randn(1, 12, 8, generator=g)
    indices = match_queries(frame0, frame1)
    assert indices.dtype == torch.long and indices.shape == (1, 12)
    assert torch.equal(indices[0], torch.argsort(perm))
    assert torch.allclose(reorder(frame1, indices), 3.0 * frame0, atol=0.05)


def test_batch_elements_match_independently() -> None:
    g = torch.Generator().manual_seed(1)
    prev = torch.randn(3, 6, 5, generator=g)
    perms = [torch.randperm(6, generator=g) for _ in range(3)]
    cur = torch.stack([prev[b, p] for b, p in enumerate(perms)])
    indices = match_queries(prev, cur)
    for b in range(3):
        assert torch.equal(indices[b], torch.argsort(perms[b]))
        assert torch.equal(match_queries(prev[b : b + 1], cur[b : b + 1])[0], indices[b])


def test_cosine_cost_range_and_scale_invariance() -> None:
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(2, 4, 3, generator=g), torch.randn(2, 5, 3, generator=g)
    cost = cosine_cost(a, b)
    assert cost.shape == (2, 4, 5)
    assert cost.min() >= -1e-6 and cost.max() <= 2 + 1e-6
    assert torch.allclose(cost, cosine_cost(7 * a, 0.1 * b), atol=1e-6)


def _rotating_objects(num_frames: int, step_deg: float, perms: list[torch.Tensor]) -> torch.Tensor:
    """4 objects on the unit circle, 90 deg apart, all rotating by `step_deg` per frame; frame t is shuffled
    by perms[t]. Returns [1, T, 4, 2]."""
    frames = []
    for t in range(num_frames):
        angles = torch.tensor([0.0, 90.0, 180.0, 270.0]) + t * step_deg
        pts = torch.stack([torch.cos(angles * math.pi / 180), torch.sin(angles * math.pi / 180)], -1)
        frames.append(pts[perms[t]])
    return torch.stack(frames)[None]


def test_chain_follows_gradual_drift() -> None:
    # 30 deg per frame: after 3 frames an object sits where its neighbour was at frame 0, so only matching
    # against the *previous reordered* frame (not frame 0) keeps identities.
    g = torch.Generator().manual_seed(3)
    t = 7
    perms = [torch.arange(4)] + [torch.randperm(4, generator=g) for _ in range(t - 1)]
    x = _rotating_objects(t, 30.0, perms)
    indices = _chain(x)
    assert indices.shape == (1, t, 4)
    assert torch.equal(indices[0, 0], torch.arange(4))
    for i in range(t):
        # slot s must hold object s in every frame
        assert torch.equal(indices[0, i], torch.argsort(perms[i])), i
    # Matching frame 5 straight to frame 0 would swap identities: the chain is what makes it right.
    direct = match_queries(x[:, 0], x[:, 5])
    assert not torch.equal(direct[0], torch.argsort(perms[5]))


def test_reorder_gathers_trailing_dims() -> None:
    x = torch.arange(2 * 3 * 2 * 2).view(2, 3, 2, 2)
    idx = torch.tensor([[2, 0, 1], [1, 1, 0]])
    out = reorder(x, idx)
    for b in range(2):
        for i in range(3):
            assert torch.equal(out[b, i], x[b, idx[b, i]])
