"""SetCriterion: class/focal/mask/dice losses, normalisation, deep supervision, external matching."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vidseg.config import LossConfig
from vidseg.losses.criterion import LossBreakdown, SetCriterion, sigmoid_focal_loss
from vidseg.losses.matcher import HungarianMatcher, Matching
from vidseg.losses.targets import ClipTargets, FrameTargets
from vidseg.models.outputs import LayerPrediction, SegmenterOutput

K = 3


def _criterion(classification="softmax", num_points=None, **kw) -> SetCriterion:
    matcher = HungarianMatcher(num_points=num_points, classification=classification)
    return SetCriterion(K, matcher, classification=classification, num_points=num_points, **kw)


def _targets() -> list[FrameTargets]:
    m0 = torch.zeros(2, 8, 8, dtype=torch.bool)
    m0[0, :, :4] = True
    m0[1, :4, 4:] = True
    m1 = torch.zeros(1, 8, 8, dtype=torch.bool)
    m1[0, 2:6, 2:6] = True
    return [FrameTargets(torch.tensor([0, 2]), m0), FrameTargets(torch.tensor([1]), m1)]


def _perfect(targets, q=4, softmax=True) -> LayerPrediction:
    """Query n predicts target n exactly (logits +-20), other queries predict nothing."""
    b = len(targets)
    h, w = targets[0].masks.shape[-2:]
    cls = torch.full((b, q, K + (1 if softmax else 0)), -20.0)
    msk = torch.full((b, q, h, w), -20.0)
    for i, t in enumerate(targets):
        for n in range(len(t)):
            cls[i, n, t.class_ids[n]] = 20.0
            msk[i, n] = torch.where(t.masks[n], 20.0, -20.0)
        if softmax:
            cls[i, len(t) :, K] = 20.0
    return LayerPrediction(cls, msk)


def _random(b=2, q=4, softmax=True, seed=0) -> LayerPrediction:
    g = torch.Generator().manual_seed(seed)
    cls = torch.randn(b, q, K + (1 if softmax else 0), generator=g)
    msk = torch.randn(b, q, 8, 8, generator=g)
    return LayerPrediction(cls, msk)


def test_sigmoid_focal_loss_matches_formula():
    x = torch.tensor([-2.0, -0.5, 0.0, 1.0, 3.0])
    t = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    got = sigmoid_focal_loss(x, t, alpha=0.25, gamma=2.0)
    for i in range(5):
        p = 1 / (1 + math.exp(-float(x[i])))
        if t[i] == 1:
            want = -0.25 * (1 - p) ** 2 * math.log(p)
        else:
            want = -0.75 * p**2 * math.log(1 - p)
        assert abs(float(got[i]) - want) < 1e-6


def test_softmax_class_loss_by_hand():
    crit = _criterion(no_object_weight=0.1)
    logits = torch.tensor([[[1.0, 0.0, 0.0, 0.5], [0.0, 2.0, 0.0, 0.0], [0.3, 0.2, 0.1, 1.0]]])  # [1, 3, K+1]
    targets = [FrameTargets(torch.tensor([2]), torch.ones(1, 2, 2, dtype=torch.bool))]
    matching = [Matching(torch.tensor([1]), torch.tensor([0]))]
    loss = crit.class_loss(logits, targets, matching, num_masks=1.0)
    # Targets: query 0 -> no-object (3), query 1 -> class 2, query 2 -> no-object; weights 0.1, 1, 0.1.
    nll = [-F.log_softmax(logits[0, q], -1)[c] for q, c in [(0, 3), (1, 2), (2, 3)]]
    want = (0.1 * nll[0] + 1.0 * nll[1] + 0.1 * nll[2]) / 1.2
    torch.testing.assert_close(loss, want)


def test_focal_class_loss_normalised_by_num_masks():
    crit = _criterion("sigmoid")
    logits = torch.randn(2, 4, K, generator=torch.Generator().manual_seed(0))
    targets = _targets()
    matching = [
        Matching(torch.tensor([0, 3]), torch.tensor([1, 0])),
        Matching(torch.tensor([2]), torch.tensor([0])),
    ]
    onehot = torch.zeros(2, 4, K)
    onehot[0, 0, 2] = onehot[0, 3, 0] = onehot[1, 2, 1] = 1
    want = sigmoid_focal_loss(logits, onehot).sum() / 3.0
    torch.testing.assert_close(crit.class_loss(logits, targets, matching, num_masks=3.0), want)
    # Upstream's "mean over queries, sum, times Q, / num_masks" is the same number.
    upstream = sigmoid_focal_loss(logits, onehot).mean(1).sum() * 4 / 3.0
    torch.testing.assert_close(crit.class_loss(logits, targets, matching, num_masks=3.0), upstream)


def test_mask_losses_by_hand():
    crit = _criterion()
    mask_logits = torch.tensor([[[[1.0, -1.0]], [[0.0, 2.0]]]])  # [1, 2, 1, 2]
    targets = [FrameTargets(torch.tensor([0]), torch.tensor([[[True, False]]]))]
    bce, dice = crit.mask_losses(mask_logits, targets, [Matching(torch.tensor([1]), torch.tensor([0]))], 2.0)
    s = [0.5, 1 / (1 + math.exp(-2))]
    want_bce = (-math.log(s[0]) - math.log(1 - s[1])) / 2 / 2.0
    want_dice = (1 - (2 * s[0] + 1) / (s[0] + s[1] + 1 + 1)) / 2.0
    assert abs(float(bce) - want_bce) < 1e-6
    assert abs(float(dice) - want_dice) < 1e-6


@pytest.mark.parametrize("classification", ["softmax", "sigmoid"])
def test_perfect_predictions_give_near_zero_loss(classification):
    softmax = classification == "softmax"
    targets = _targets()
    # Every pixel as a point: the loss of a perfect prediction is ~0 (the minimum).
    crit = _criterion(classification)
    perfect = crit(_perfect(targets, softmax=softmax), targets)
    noisy = crit(_random(softmax=softmax), targets)
    assert isinstance(perfect, LossBreakdown)
    assert torch.isfinite(perfect.total) and torch.isfinite(noisy.total)
    assert float(perfect.total) < 1e-3
    assert float(noisy.total) > 1.0
    assert perfect.num_masks == 3.0
    assert [m.query_indices.tolist() for m in perfect.matching] == [[0, 1], [0]]
    # Importance-sampled points concentrate on mask edges, where bilinear sampling blurs even a perfect
    # prediction, so the loss is no longer ~0; it stays well below that of a random prediction.
    sampled = _criterion(classification, num_points=128)
    g = torch.Generator().manual_seed(0)
    p_loss = sampled(_perfect(targets, softmax=softmax), targets, generator=g).total
    n_loss = sampled(_random(softmax=softmax), targets, generator=g).total
    assert torch.isfinite(p_loss) and float(p_loss) < float(n_loss)


def test_gradients_flow_to_class_and_mask_logits():
    targets = _targets()
    pred = _random()
    cls = pred.class_logits.clone().requires_grad_(True)
    msk = pred.mask_logits.clone().requires_grad_(True)
    crit = SetCriterion.from_config(LossConfig(num_points=64), num_classes=K)
    out = crit(LayerPrediction(cls, msk), targets, generator=torch.Generator().manual_seed(0))
    out.total.backward()
    assert torch.isfinite(cls.grad).all() and cls.grad.abs().sum() > 0
    assert torch.isfinite(msk.grad).all() and msk.grad.abs().sum() > 0
    assert set(out.as_dict()) == {"loss_total", "loss_class", "loss_mask", "loss_dice"}


def test_deep_supervision_sums_over_aux():
    targets = _targets()
    final, aux0, aux1 = _random(seed=0), _random(seed=1), _random(seed=2)
    output = SegmenterOutput(
        queries=torch.zeros(2, 4, 8),
        raw_queries=torch.zeros(2, 4, 8),
        class_logits=final.class_logits,
        mask_logits=final.mask_logits,
        aux=[aux0, aux1],
    )
    crit = _criterion()  # all points, deterministic
    out = crit(output, targets)
    singles = [crit(p, targets).total for p in (final, aux0, aux1)]
    torch.testing.assert_close(out.total, sum(singles))
    assert len(out.aux) == 2
    assert "loss_dice_aux1" in out.as_dict()
    weighted = out.as_dict(weighted=True)
    torch.testing.assert_close(sum(v for k, v in weighted.items() if k != "loss_total"), out.total)
    w = crit.class_weight * out.aux[0].class_loss + 5 * out.aux[0].mask_loss + 5 * out.aux[0].dice_loss
    torch.testing.assert_close(w, singles[1])
    no_ds = _criterion(deep_supervision=False)(output, targets)
    torch.testing.assert_close(no_ds.total, singles[0])
    assert no_ds.aux == []


def test_external_matching_used_for_every_set():
    targets = _targets()
    pred = _perfect(targets)
    crit = _criterion()
    own = crit(pred, targets, aux=[pred])
    # Swap the queries of the two objects of frame 0: a deliberately wrong external matching.
    wrong = [
        Matching(torch.tensor([0, 1]), torch.tensor([1, 0])),
        Matching(torch.tensor([0]), torch.tensor([0])),
    ]
    ext = crit(pred, targets, wrong, aux=[pred])
    assert ext.matching is not None and ext.matching[0].target_indices.tolist() == [1, 0]
    assert float(ext.final.mask_loss) > 1.0 and float(ext.aux[0].mask_loss) > 1.0
    assert float(ext.total) > float(own.total) + 1.0
    with pytest.raises(ValueError):
        crit(pred, targets, wrong[:1])


def test_zero_targets_finite_and_differentiable():
    targets = [FrameTargets.empty(8, 8), FrameTargets.empty(8, 8)]
    for classification in ("softmax", "sigmoid"):
        pred = _random(softmax=classification == "softmax")
        cls = pred.class_logits.clone().requires_grad_(True)
        msk = pred.mask_logits.clone().requires_grad_(True)
        out = _criterion(classification, num_points=32)(LayerPrediction(cls, msk), targets)
        assert out.num_masks == 1.0
        assert float(out.final.mask_loss.detach()) == 0.0 and float(out.final.dice_loss.detach()) == 0.0
        assert float(out.final.class_loss.detach()) > 0
        out.total.backward()
        assert torch.isfinite(cls.grad).all() and msk.grad is not None


def test_num_masks_reducer_hook():
    targets = _targets()
    pred = _random()
    base = _criterion()(pred, targets)
    doubled = _criterion(num_masks_reducer=lambda x: x * 2)(pred, targets)
    assert doubled.num_masks == 6.0
    torch.testing.assert_close(doubled.final.mask_loss, base.final.mask_loss / 2)
    torch.testing.assert_close(doubled.final.class_loss, base.final.class_loss)  # CE is a mean, not / masks


def test_clip_training_with_first_appearance_matching():
    """Frames of a clip flattened into the batch with one first-appearance matching repeated per frame."""
    masks = torch.zeros(2, 3, 8, 8, dtype=torch.bool)
    masks[0, :, :, :4] = True
    masks[1, 1:, :4, 4:] = True  # absent in frame 0
    clip = ClipTargets(torch.tensor([0, 2]), masks)
    frames = clip.frames()
    assert [len(f) for f in frames] == [2, 2, 2] and not bool(frames[0].masks[1].any())
    pred = _random(b=3, seed=4)
    crit = _criterion("softmax", num_points=32)
    g = torch.Generator().manual_seed(0)
    m = crit.matcher.match_first_appearance(pred.class_logits, pred.mask_logits, clip, generator=g)
    out = crit(pred, frames, [m] * 3, generator=g)
    assert out.num_masks == 6.0 and torch.isfinite(out.total)
