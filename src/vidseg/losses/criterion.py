"""Set criterion: losses of matched query predictions (Mask2Former; focal variant for sigmoid heads).

For every prediction set (the final layer, then each `aux` set when deep supervision is on), with the same
weights on every set:

* class loss
  * softmax head ([B, Q, K+1]): cross-entropy over K+1 classes, unmatched queries target the no-object class,
    whose weight is `no_object_weight` (0.1); weighted mean over all queries (not divided by the mask count).
  * sigmoid head ([B, Q, K]): sigmoid focal loss (alpha 0.25, gamma 2) against one-hot targets (all-zero rows
    for unmatched queries), summed over queries and classes and divided by the mask count. Upstream writes
    this as `mean over queries, sum, times Q, / num_masks`, which is the same number.
* mask loss: binary cross-entropy, mean over P importance-sampled points, summed over matches / num_masks.
* dice loss: 1 - (2 sum(s t) + 1) / (sum(s) + sum(t) + 1) on the same points, summed / num_masks.

`num_masks` is the number of target objects in the batch (for clips trained frame by frame: summed over
frames), averaged across DDP ranks when `torch.distributed` is initialised, and at least 1.

Video stages pass their own matching (e.g. `HungarianMatcher.match_first_appearance`, repeated for every
frame of the clip, frames flattened into the batch); it is then used for every prediction set unless
`aux_matching` gives each auxiliary set its own (DVIS++ after the guided-matching phase re-matches every
layer on its own predictions: `VideoSetCriterion.forward`, mask2former_video/modeling/criterion.py:241-249).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from vidseg.config import LossConfig
from vidseg.losses.matcher import HungarianMatcher, Matching
from vidseg.losses.point_sampling import grid_points, point_sample, uncertain_points
from vidseg.losses.targets import FrameTargets
from vidseg.models.outputs import LayerPrediction, SegmenterOutput
from vidseg.types import Classification


@dataclass
class LayerLosses:
    """Unweighted losses of one prediction set (0-dim tensors)."""

    class_loss: Tensor
    mask_loss: Tensor
    dice_loss: Tensor


@dataclass
class LossBreakdown:
    """What the criterion returns.

    Attributes:
        total: weighted sum over all prediction sets (the tensor to back-propagate).
        final: losses of the final prediction set.
        aux: losses of each auxiliary set, in the order of `SegmenterOutput.aux`.
        num_masks: the normaliser used (after averaging across ranks).
        matching: the matching used for the final set, one per batch element.
        weights: (class, mask, dice) weights that `total` applies to every set.
    """

    total: Tensor
    final: LayerLosses
    aux: list[LayerLosses] = field(default_factory=list)
    num_masks: float = 1.0
    matching: list[Matching] = field(default_factory=list)
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def as_dict(self, weighted: bool = False) -> dict[str, Tensor]:
        """Flat name -> loss for logging: `loss_total` and `loss_class`, `loss_mask`, `loss_dice`,
        `loss_class_aux0`, ... (multiplied by their weights when `weighted`)."""
        wc, wm, wd = self.weights if weighted else (1.0, 1.0, 1.0)
        out: dict[str, Tensor] = {"loss_total": self.total}
        for suffix, layer in [("", self.final)] + [(f"_aux{i}", a) for i, a in enumerate(self.aux)]:
            out[f"loss_class{suffix}"] = wc * layer.class_loss
            out[f"loss_mask{suffix}"] = wm * layer.mask_loss
            out[f"loss_dice{suffix}"] = wd * layer.dice_loss
        return out


def average_across_ranks(value: Tensor) -> Tensor:
    """Mean of a tensor over DDP ranks (all_reduce) when torch.distributed is initialised; else unchanged."""
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value = value / dist.get_world_size()
    return value


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Element-wise focal loss alpha_t (1 - p_t)^gamma BCE(logits, targets); any shape, not reduced.

    alpha_t = alpha for positives and 1 - alpha for negatives (no weighting when alpha < 0).
    """
    p = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = bce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss


def point_bce_loss(point_logits: Tensor, point_labels: Tensor) -> Tensor:
    """[M] mean BCE over points; point_logits, point_labels [M, P]."""
    return F.binary_cross_entropy_with_logits(point_logits, point_labels, reduction="none").mean(1)


def point_dice_loss(point_logits: Tensor, point_labels: Tensor) -> Tensor:
    """[M] dice loss over points; point_logits, point_labels [M, P]."""
    s = point_logits.sigmoid()
    numerator = 2 * (s * point_labels).sum(-1)
    denominator = s.sum(-1) + point_labels.sum(-1)
    return 1 - (numerator + 1) / (denominator + 1)


class SetCriterion:
    """Mask2Former losses over matched predictions, with deep supervision.

    Args:
        num_classes: K (without no-object).
        matcher: matches each prediction set when no matching is supplied.
        class_weight, mask_weight, dice_weight: loss weights (the same on every prediction set).
        no_object_weight: cross-entropy weight of the no-object class (softmax head).
        classification: "softmax" ([.., K+1] logits) or "sigmoid" ([.., K] logits, focal loss).
        focal_alpha, focal_gamma: focal loss parameters (sigmoid head).
        num_points: points per matched mask; None uses every prediction pixel (no sampling).
        oversample_ratio, importance_sample_ratio: importance sampling of the points.
        deep_supervision: also supervise `aux` prediction sets.
        num_masks_reducer: maps the local [1] mask count to the global one; defaults to the DDP average.
    """

    def __init__(
        self,
        num_classes: int,
        matcher: HungarianMatcher,
        class_weight: float = 2.0,
        mask_weight: float = 5.0,
        dice_weight: float = 5.0,
        no_object_weight: float = 0.1,
        classification: Classification = "softmax",
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        num_points: int | None = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
        deep_supervision: bool = True,
        num_masks_reducer: Callable[[Tensor], Tensor] = average_across_ranks,
    ) -> None:
        if classification not in ("softmax", "sigmoid"):
            raise ValueError(f"classification must be 'softmax' or 'sigmoid', got {classification!r}")
        self.num_classes = num_classes
        self.matcher = matcher
        self.class_weight = class_weight
        self.mask_weight = mask_weight
        self.dice_weight = dice_weight
        self.no_object_weight = no_object_weight
        self.classification = classification
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.deep_supervision = deep_supervision
        self.num_masks_reducer = num_masks_reducer

    @classmethod
    def from_config(
        cls, config: LossConfig, num_classes: int, classification: Classification = "softmax"
    ) -> SetCriterion:
        return cls(
            num_classes=num_classes,
            matcher=HungarianMatcher.from_config(config, classification),
            class_weight=config.class_weight,
            mask_weight=config.mask_weight,
            dice_weight=config.dice_weight,
            no_object_weight=config.no_object_weight,
            classification=classification,
            focal_alpha=config.focal_alpha,
            focal_gamma=config.focal_gamma,
            num_points=config.num_points,
            oversample_ratio=config.oversample_ratio,
            importance_sample_ratio=config.importance_sample_ratio,
            deep_supervision=config.deep_supervision,
        )

    # ------------------------------------------------------------------------------------------------------

    def __call__(
        self,
        output: SegmenterOutput | LayerPrediction,
        targets: Sequence[FrameTargets],
        matching: Sequence[Matching] | None = None,
        *,
        aux: Sequence[LayerPrediction] | None = None,
        aux_matching: Sequence[Sequence[Matching]] | None = None,
        generator: torch.Generator | None = None,
    ) -> LossBreakdown:
        """Losses of a batch of B frames.

        Args:
            output: final predictions, class_logits [B, Q, K(+1)] and mask_logits [B, Q, h, w]; a
                `SegmenterOutput` brings its `aux` sets along.
            targets: B frames of targets, masks covering the same (padded) images as the predictions.
            matching: B matchings to use for every prediction set; None matches each set with the matcher.
            aux: auxiliary prediction sets (overrides `output.aux`).
            aux_matching: per auxiliary set, B matchings to use for it (overrides `matching` there).
            generator: drives the point sampling of the matcher and of the losses.
        """
        final = LayerPrediction(output.class_logits, output.mask_logits)
        if aux is None:
            aux = output.aux if isinstance(output, SegmenterOutput) else []
        if not self.deep_supervision:
            aux, aux_matching = [], None
        b = final.class_logits.shape[0]
        if len(targets) != b:
            raise ValueError(f"criterion: {b} predictions but {len(targets)} targets")
        if matching is not None and len(matching) != b:
            raise ValueError(f"criterion: {b} predictions but {len(matching)} matchings")
        num_masks = self.num_masks(targets, final.class_logits.device)

        final_matching = list(matching) if matching is not None else self._match(final, targets, generator)
        final_losses = self.layer_losses(final, targets, final_matching, num_masks, generator)
        aux_losses = []
        if aux_matching is not None and len(aux_matching) != len(aux):
            raise ValueError(f"criterion: {len(aux)} auxiliary sets but {len(aux_matching)} auxiliary matchings")
        for j, pred in enumerate(aux):
            if aux_matching is not None:
                m = list(aux_matching[j])
            elif matching is not None:
                m = list(matching)
            else:
                m = self._match(pred, targets, generator)
            aux_losses.append(self.layer_losses(pred, targets, m, num_masks, generator))
        total = sum((self._weighted(x) for x in aux_losses), self._weighted(final_losses))
        weights = (self.class_weight, self.mask_weight, self.dice_weight)
        return LossBreakdown(total, final_losses, aux_losses, num_masks, final_matching, weights)

    def num_masks(self, targets: Sequence[FrameTargets], device: torch.device) -> float:
        """Number of target objects in the batch, averaged across ranks, at least 1."""
        local = torch.tensor([float(sum(len(t) for t in targets))], device=device)
        return max(float(self.num_masks_reducer(local).item()), 1.0)

    def layer_losses(
        self,
        pred: LayerPrediction,
        targets: Sequence[FrameTargets],
        matching: Sequence[Matching],
        num_masks: float,
        generator: torch.Generator | None = None,
    ) -> LayerLosses:
        """Unweighted losses of one prediction set under a given matching."""
        matching = [m.to(pred.class_logits.device) for m in matching]
        class_loss = self.class_loss(pred.class_logits, targets, matching, num_masks)
        mask_loss, dice_loss = self.mask_losses(pred.mask_logits, targets, matching, num_masks, generator)
        return LayerLosses(class_loss, mask_loss, dice_loss)

    def class_loss(
        self,
        class_logits: Tensor,
        targets: Sequence[FrameTargets],
        matching: Sequence[Matching],
        num_masks: float,
    ) -> Tensor:
        """Class loss of class_logits [B, Q, K+1] (softmax) or [B, Q, K] (sigmoid)."""
        logits = class_logits.float()
        bsz, q, _ = logits.shape
        k = self.num_classes
        target_classes = torch.full((bsz, q), k, dtype=torch.long, device=logits.device)
        for i, (t, m) in enumerate(zip(targets, matching)):
            target_classes[i, m.query_indices] = t.class_ids.to(logits.device)[m.target_indices]
        if self.classification == "softmax":
            weight = torch.ones(k + 1, device=logits.device)
            weight[k] = self.no_object_weight
            return F.cross_entropy(logits.transpose(1, 2), target_classes, weight)
        # One column too many for the "no object" index, dropped after one-hot encoding.
        onehot = F.one_hot(target_classes, k + 1)[..., :k].to(logits.dtype)
        loss = sigmoid_focal_loss(logits, onehot, self.focal_alpha, self.focal_gamma)
        return loss.sum() / num_masks

    def mask_losses(
        self,
        mask_logits: Tensor,
        targets: Sequence[FrameTargets],
        matching: Sequence[Matching],
        num_masks: float,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(BCE, dice) of matched masks; mask_logits [B, Q, h, w], target masks [N_b, H, W]."""
        preds, labels_src = [], []
        for i, (t, m) in enumerate(zip(targets, matching)):
            if len(m) == 0:
                continue
            preds.append(mask_logits[i, m.query_indices])
            labels_src.append(t.masks[m.target_indices.to(t.masks.device)])
        if not preds:
            # Keep the graph connected so that every parameter still receives a (zero) gradient under DDP.
            zero = mask_logits.sum() * 0.0
            return zero, zero
        src = torch.cat(preds).float()  # [M, h, w]
        with torch.no_grad():
            if self.num_points is None:
                points = grid_points(src.shape[-2], src.shape[-1], src.device).expand(src.shape[0], -1, -1)
            else:
                points = uncertain_points(
                    src, self.num_points, self.oversample_ratio, self.importance_sample_ratio, generator
                )
            labels, start = [], 0
            for masks in labels_src:
                n = masks.shape[0]
                labels.append(point_sample(masks.float(), points[start : start + n].to(masks.device)))
                start += n
            point_labels = torch.cat([lab.to(src.device) for lab in labels])  # [M, P]
        point_logits = point_sample(src, points)  # [M, P]
        bce = point_bce_loss(point_logits, point_labels).sum() / num_masks
        dice = point_dice_loss(point_logits, point_labels).sum() / num_masks
        return bce, dice

    # ------------------------------------------------------------------------------------------------------

    def _match(
        self, pred: LayerPrediction, targets: Sequence[FrameTargets], generator: torch.Generator | None
    ) -> list[Matching]:
        return self.matcher(pred.class_logits.detach(), pred.mask_logits.detach(), targets, generator)

    def _weighted(self, losses: LayerLosses) -> Tensor:
        return (
            self.class_weight * losses.class_loss
            + self.mask_weight * losses.mask_loss
            + self.dice_weight * losses.dice_loss
        )
