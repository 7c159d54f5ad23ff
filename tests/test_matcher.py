"""Point sampling and Hungarian matching: per frame, first appearance, clip."""

from __future__ import annotations

import math

import pytest
import torch

from vidseg.config import LossConfig
from vidseg.losses.matcher import (
    HungarianMatcher,
    Matching,
    focal_class_cost,
    pairwise_bce_cost,
    pairwise_dice_cost,
    softmax_class_cost,
)
from vidseg.losses.point_sampling import (
    grid_points,
    point_sample,
    random_points,
    uncertain_points,
)
from vidseg.losses.targets import ClipTargets, FrameTargets


def _stripes(n: int, h: int, w: int) -> torch.Tensor:
    """[n, h, w] bool: n disjoint vertical stripes covering the image."""
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    edges = torch.linspace(0, w, n + 1).round().long()
    for i in range(n):
        masks[i, :, edges[i] : edges[i + 1]] = True
    return masks


def _predictions_for(perm: list[int], masks, class_ids, q: int, k: int, softmax=True):
    """Class/mask logits where query perm[n] predicts target n well and the other queries predict noise."""
    g = torch.Generator().manual_seed(3)
    n, h, w = masks.shape
    class_logits = torch.randn(q, k + (1 if softmax else 0), generator=g)
    mask_logits = torch.randn(q, h, w, generator=g) - 4
    for tgt, query in enumerate(perm):
        class_logits[query, class_ids[tgt]] = 8.0
        mask_logits[query] = torch.where(masks[tgt], 6.0, -6.0)
    return class_logits, mask_logits


# ------------------------------------------------------------------------------------------------------------
# Point sampling


def test_grid_points_sample_every_pixel_exactly():
    x = torch.arange(12.0).reshape(1, 3, 4)
    pts = grid_points(3, 4)
    assert pts.shape == (1, 12, 2)
    torch.testing.assert_close(point_sample(x, pts), x.reshape(1, 12))


def test_point_sample_resolution_independent():
    """A 4x-resolution target sampled at the centres of the coarse pixels gives the coarse values."""
    coarse = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    fine = coarse.repeat_interleave(4, 1).repeat_interleave(4, 2)  # [1, 8, 8]
    pts = grid_points(2, 2)
    torch.testing.assert_close(point_sample(fine, pts), point_sample(coarse, pts))
    torch.testing.assert_close(point_sample(fine.bool(), pts), coarse.reshape(1, 4))


def test_random_points_deterministic_with_generator():
    a = random_points(2, 5, generator=torch.Generator().manual_seed(0))
    b = random_points(2, 5, generator=torch.Generator().manual_seed(0))
    assert a.shape == (2, 5, 2)
    torch.testing.assert_close(a, b)
    assert float(a.min()) >= 0 and float(a.max()) < 1


def test_importance_sampling_picks_uncertain_points():
    # Left half of the map is maximally uncertain (logit 0), right half confident (logit 20).
    logits = torch.full((1, 16, 16), 20.0)
    logits[:, :, :8] = 0.0
    g = torch.Generator().manual_seed(0)
    pts = uncertain_points(logits, 100, 3, 0.75, generator=g)
    assert pts.shape == (1, 100, 2)
    # The 75 importance points come first and all sit where the logit is exactly 0 (x < 7.5/16).
    assert bool((pts[0, :75, 0] < 7.5 / 16).all())
    values = point_sample(logits, pts)[0]
    assert float(values[:75].abs().max()) == 0.0
    # The remaining 25 are uniform: with overwhelming probability some land in the confident half.
    assert bool((pts[0, 75:, 0] > 0.5).any())
    again = uncertain_points(logits, 100, 3, 0.75, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(pts, again)


def test_importance_sampling_all_uncertain():
    logits = torch.randn(3, 8, 8)
    pts = uncertain_points(logits, 10, 3, 1.0, generator=torch.Generator().manual_seed(1))
    assert pts.shape == (3, 10, 2)


# ------------------------------------------------------------------------------------------------------------
# Cost terms by hand


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_cost_terms_equal_hand_computation():
    # 2 queries, 2 targets, 1x2 masks: every pixel is a point (num_points=None).
    mask_logits = torch.tensor([[[1.0, -2.0]], [[0.5, 3.0]]])
    targets = FrameTargets(torch.tensor([1, 0]), torch.tensor([[[True, False]], [[True, True]]]))
    class_logits = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, -1.0]])  # K=2 + no-object

    def bce(x, t):
        return -(t * math.log(_sig(x)) + (1 - t) * math.log(1 - _sig(x)))

    exp_class = torch.zeros(2, 2)
    exp_bce = torch.zeros(2, 2)
    exp_dice = torch.zeros(2, 2)
    for q in range(2):
        z = class_logits[q].tolist()
        denom = sum(math.exp(v) for v in z)
        xs = mask_logits[q, 0].tolist()
        for n in range(2):
            c = int(targets.class_ids[n])
            ts = targets.masks[n, 0].float().tolist()
            exp_class[q, n] = -math.exp(z[c]) / denom
            exp_bce[q, n] = sum(bce(x, t) for x, t in zip(xs, ts)) / 2
            s = [_sig(x) for x in xs]
            inter = sum(a * b for a, b in zip(s, ts))
            exp_dice[q, n] = 1 - (2 * inter + 1) / (sum(s) + sum(ts) + 1)

    pts = grid_points(1, 2)
    pl = point_sample(mask_logits, pts.expand(2, -1, -1))
    tl = point_sample(targets.masks, pts.expand(2, -1, -1))
    torch.testing.assert_close(softmax_class_cost(class_logits, targets.class_ids), exp_class)
    torch.testing.assert_close(pairwise_bce_cost(pl, tl), exp_bce)
    torch.testing.assert_close(pairwise_dice_cost(pl, tl), exp_dice)

    matcher = HungarianMatcher(class_weight=2, mask_weight=5, dice_weight=5, num_points=None)
    cost = matcher.cost_matrix(class_logits, mask_logits, targets)
    torch.testing.assert_close(cost, 2 * exp_class + 5 * exp_bce + 5 * exp_dice)


def test_focal_class_cost_formula():
    logits = torch.tensor([[2.0, -1.0, 0.3], [-3.0, 0.0, 4.0]])
    ids = torch.tensor([2, 0, 0])
    alpha, gamma = 0.25, 2.0
    cost = focal_class_cost(logits, ids, alpha, gamma)
    for q in range(2):
        for n in range(3):
            p = _sig(float(logits[q, ids[n]]))
            want = alpha * (1 - p) ** gamma * -math.log(p) - (1 - alpha) * p**gamma * -math.log(1 - p)
            assert abs(float(cost[q, n]) - want) < 1e-5
    # A confident correct prediction costs less than an unconfident one.
    assert float(cost[1, 0]) < float(cost[0, 0])


# ------------------------------------------------------------------------------------------------------------
# Per-frame matching


@pytest.mark.parametrize("classification", ["softmax", "sigmoid"])
def test_matcher_recovers_permutation(classification):
    masks = _stripes(3, 8, 12)
    class_ids = torch.tensor([2, 0, 2])
    perm = [4, 1, 3]
    cls, msk = _predictions_for(perm, masks, class_ids, q=6, k=3, softmax=classification == "softmax")
    matcher = HungarianMatcher(num_points=None, classification=classification)
    m = matcher.match_frame(cls, msk, FrameTargets(class_ids, masks))
    assert m.query_indices.tolist() == [1, 3, 4]
    assert m.target_indices.tolist() == [1, 2, 0]


def test_matcher_batch_random_points_high_resolution_targets():
    """Predictions at 1/4, targets at full resolution, random shared points."""
    masks = _stripes(3, 8, 8)
    class_ids = torch.tensor([0, 1, 2])
    perms = [[0, 1, 2], [5, 3, 2]]
    cls, msk = zip(*[_predictions_for(p, masks, class_ids, q=6, k=3) for p in perms])
    full = masks.repeat_interleave(4, 1).repeat_interleave(4, 2)  # [3, 32, 32]
    targets = [FrameTargets(class_ids, full), FrameTargets(class_ids, full)]
    matcher = HungarianMatcher.from_config(LossConfig(num_points=256))
    out = matcher(torch.stack(cls), torch.stack(msk), targets, generator=torch.Generator().manual_seed(0))
    for perm, m in zip(perms, out):
        assert dict(zip(m.target_indices.tolist(), m.query_indices.tolist())) == dict(enumerate(perm))


def test_matcher_zero_targets():
    matcher = HungarianMatcher(num_points=16)
    cls, msk = torch.randn(5, 4), torch.randn(5, 4, 4)
    empty = FrameTargets.empty(16, 16)
    assert matcher.cost_matrix(cls, msk, empty).shape == (5, 0)
    m = matcher.match_frame(cls, msk, empty)
    assert len(m) == 0 and m.query_indices.dtype == torch.long


def test_matcher_more_targets_than_queries():
    masks = _stripes(4, 4, 8)
    matcher = HungarianMatcher(num_points=None)
    targets = FrameTargets(torch.tensor([0, 1, 0, 1]), masks)
    m = matcher.match_frame(torch.randn(2, 3), torch.randn(2, 4, 8), targets)
    assert len(m) == 2 and len(set(m.target_indices.tolist())) == 2


def test_matcher_survives_nan_logits():
    masks = _stripes(2, 4, 4)
    cls = torch.randn(3, 3)
    cls[0] = float("nan")
    targets = FrameTargets(torch.tensor([0, 1]), masks)
    m = HungarianMatcher(num_points=None).match_frame(cls, torch.randn(3, 4, 4), targets)
    assert len(m) == 2


# ------------------------------------------------------------------------------------------------------------
# First-appearance matching


def test_first_appearance_keeps_assignment_and_handles_late_instances():
    t_len, q, k, h, w = 3, 4, 2, 4, 8
    left, right = _stripes(2, h, w)
    # Instance 0 (class 0) on the left in every frame; instance 1 (class 1) only from frame 1 on the right.
    masks = torch.zeros(2, t_len, h, w, dtype=torch.bool)
    masks[0] = left
    masks[1, 1:] = right
    clip = ClipTargets(torch.tensor([0, 1]), masks, instance_ids=torch.tensor([7, 9]))
    assert clip.first_frames().tolist() == [0, 1]
    assert clip.present.tolist() == [[True, True, True], [False, True, True]]

    cls = torch.full((t_len, q, k + 1), -5.0)
    cls[..., k] = 0.0
    msk = torch.full((t_len, q, h, w), -6.0)

    def good(t, query, inst, mask):
        cls[t, query, inst] = 8.0
        msk[t, query] = torch.where(mask, 6.0, -6.0)

    good(0, 2, 0, left)  # frame 0: query 2 is instance 0
    good(1, 1, 0, left)  # frame 1: query 1 now fits instance 0 even better than query 2 ...
    good(1, 2, 1, right)  # ... and query 2 (taken) fits instance 1 best,
    cls[1, 0, 1] = 3.0  # ... query 0 fits instance 1 reasonably.
    msk[1, 0] = torch.where(right, 2.0, -2.0)
    good(2, 3, 1, right)  # frame 2: query 3 would be the best for instance 1

    matcher = HungarianMatcher(num_points=None)
    m = matcher.match_first_appearance(cls, msk, clip)
    assert m.query_indices.tolist() == [0, 2]
    assert m.target_indices.tolist() == [1, 0]
    # Per-frame matching would change its mind each frame, which is what first-appearance matching prevents.
    per_frame = [matcher.match_frame(cls[t], msk[t], clip.frame(t, only_present=True)) for t in range(3)]
    assert per_frame[1].query_indices.tolist() == [1, 2]


def test_first_appearance_never_present_and_no_queries_left():
    masks = torch.zeros(3, 2, 4, 4, dtype=torch.bool)
    masks[0, 0, :2] = True
    masks[1, 1, 2:] = True  # instance 1 appears at frame 1, instance 2 never
    clip = ClipTargets(torch.tensor([0, 1, 1]), masks)
    matcher = HungarianMatcher(num_points=None)
    m = matcher.match_first_appearance(torch.randn(2, 3, 3), torch.randn(2, 3, 4, 4), clip)
    assert sorted(m.target_indices.tolist()) == [0, 1]
    # Only one query: instance 1 finds none left.
    m1 = matcher.match_first_appearance(torch.randn(2, 1, 3), torch.randn(2, 1, 4, 4), clip)
    assert m1.query_indices.tolist() == [0] and m1.target_indices.tolist() == [0]
    with pytest.raises(ValueError):
        matcher.match_first_appearance(torch.randn(3, 3, 3), torch.randn(3, 3, 4, 4), clip)


def test_first_appearance_empty_clip():
    clip = ClipTargets(torch.zeros(0, dtype=torch.long), torch.zeros(0, 2, 4, 4, dtype=torch.bool))
    matcher = HungarianMatcher(num_points=8)
    m = matcher.match_first_appearance(torch.randn(2, 3, 3), torch.randn(2, 3, 4, 4), clip)
    assert len(m) == 0


# ------------------------------------------------------------------------------------------------------------
# Clip-level matching


def test_match_clip_uses_all_frames():
    h, w = 4, 4
    left, right = _stripes(2, h, w)
    masks = torch.stack([left, right]).unsqueeze(0)  # one instance: left at t=0, right at t=1
    clip = ClipTargets(torch.tensor([0]), masks)
    cls = torch.zeros(2, 2, 2)  # [T, Q, K+1], uninformative
    msk = torch.full((2, 2, h, w), -3.0)
    msk[0, 0] = torch.where(left, 3.0, -3.0)  # query 0: confident and right at t=0, nothing at t=1
    msk[0, 1] = torch.where(left, 1.0, -1.0)  # query 1: less confident but right in both frames
    msk[1, 1] = torch.where(right, 1.0, -1.0)
    matcher = HungarianMatcher(num_points=None)
    assert matcher.match_frame(cls[0], msk[0], clip.frame(0)).query_indices.tolist() == [0]
    m = matcher.match_clip(cls, msk, clip)
    assert m.query_indices.tolist() == [1] and m.target_indices.tolist() == [0]
    # Clip-level class logits [Q, K+1] are accepted as well; random points give the same answer.
    m2 = matcher.match_clip(cls[0], msk, clip)
    assert m2.query_indices.tolist() == [1]
    g = torch.Generator().manual_seed(0)
    rnd = HungarianMatcher(num_points=64).match_clip(cls, msk, clip, generator=g)
    assert rnd.query_indices.tolist() == [1]
    empty = ClipTargets(torch.zeros(0, dtype=torch.long), torch.zeros(0, 2, h, w))
    assert len(matcher.match_clip(cls, msk, empty)) == 0


def test_matching_empty_and_to():
    m = Matching.empty()
    assert len(m.to("cpu")) == 0
