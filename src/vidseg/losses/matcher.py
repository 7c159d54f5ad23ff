"""Hungarian matching of queries to ground-truth objects: per frame, first-appearance consistent, per clip.

Cost of assigning query q to target n (lower is better):

    class_weight * class_cost[q, n] + mask_weight * bce[q, n] + dice_weight * dice[q, n]

* class cost, softmax head ([.., K+1] logits): -p_q[c_n], the probability of the target's class.
* class cost, sigmoid head ([.., K] logits, focal, as Mask DINO / Deformable DETR):
  alpha (1-p)^gamma (-log p) - (1-alpha) p^gamma (-log(1-p)), with p = sigmoid(logit)[c_n].
* bce: mean over P points of the binary cross-entropy of the mask logits against the target mask.
* dice: 1 - (2 sum(s t) + 1) / (sum(s) + sum(t) + 1), s = sigmoid(mask logit), over the same P points.

Mask terms are evaluated on `num_points` uniformly random points shared by every prediction and target of the
frame (at normalised coordinates, so targets may be at a higher resolution than predictions); with
`num_points=None` every prediction pixel is used instead (exact, deterministic; for tests and tiny inputs).

Three ways of matching:

* `__call__` / `match_frame`: one assignment per image (Mask2Former).
* `match_first_appearance`: for a clip, each instance is matched once, at the first frame where it is present,
  against the queries not yet taken, and keeps that query for the whole clip (DVIS++ tracker training,
  Local2Global).
* `match_clip`: one assignment for the whole clip from costs over all frames (DVIS++ refiner): the class
  cost of the clip-level class prediction, and mask costs over the clip volume (points drawn in every frame,
  BCE averaged and dice accumulated over all of them, as if the clip were one tall image).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from vidseg.config import LossConfig
from vidseg.losses.point_sampling import grid_points, point_sample, random_points
from vidseg.losses.targets import ClipTargets, FrameTargets
from vidseg.types import Classification

# Stands in for non-finite costs (e.g. NaN logits after an fp16 overflow) so that scipy still returns an
# assignment; the loss itself then shows the problem instead of the matcher crashing.
_INVALID_COST = 1e8


@dataclass
class Matching:
    """A one-to-one assignment between queries and targets of one frame or clip.

    Attributes:
        query_indices: [M] int64 matched query index, increasing.
        target_indices: [M] int64 index of the target matched to each of those queries.
    """

    query_indices: Tensor
    target_indices: Tensor

    def __len__(self) -> int:
        return int(self.query_indices.shape[0])

    @classmethod
    def empty(cls, device: torch.device | str = "cpu") -> Matching:
        z = torch.zeros(0, dtype=torch.long, device=device)
        return cls(z, z.clone())

    def to(self, device: torch.device | str) -> Matching:
        return Matching(self.query_indices.to(device), self.target_indices.to(device))


def softmax_class_cost(class_logits: Tensor, class_ids: Tensor) -> Tensor:
    """[Q, N] = -softmax(class_logits)[q, class_ids[n]]; class_logits [Q, K+1], class_ids [N]."""
    return -class_logits.float().softmax(-1)[:, class_ids]


def focal_class_cost(
    class_logits: Tensor, class_ids: Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """[Q, N] focal class cost of a sigmoid head; class_logits [Q, K], class_ids [N]."""
    logits = class_logits.float()[:, class_ids]
    p = logits.sigmoid()
    # -log p = softplus(-x) and -log(1-p) = softplus(x), without the log(0) of saturated probabilities.
    positive = alpha * (1 - p) ** gamma * F.softplus(-logits)
    negative = (1 - alpha) * p**gamma * F.softplus(logits)
    return positive - negative


def pairwise_bce_cost(point_logits: Tensor, point_labels: Tensor) -> Tensor:
    """[Q, N] mean binary cross-entropy over P points; point_logits [Q, P], point_labels [N, P] in [0, 1]."""
    x = point_logits.float()
    t = point_labels.float()
    # BCE(x, t) = t softplus(-x) + (1 - t) softplus(x) = softplus(x) - t x, since softplus(-x) = softplus(x) - x:
    # one softplus and one matrix product for all pairs.
    cost = F.softplus(x).sum(-1)[:, None] - x @ t.T
    return cost / max(x.shape[1], 1)


def pairwise_dice_cost(point_logits: Tensor, point_labels: Tensor) -> Tensor:
    """[Q, N] dice cost 1 - (2 s.t + 1) / (sum s + sum t + 1); point_logits [Q, P], point_labels [N, P]."""
    s = point_logits.float().sigmoid()
    t = point_labels.float()
    numerator = 2 * (s @ t.T)
    denominator = s.sum(-1)[:, None] + t.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def hungarian(cost: Tensor) -> Matching:
    """Minimum-cost one-to-one assignment of a [Q, N] cost matrix (rows = queries)."""
    device = cost.device
    if cost.numel() == 0:
        return Matching.empty(device)
    big = _INVALID_COST
    c = torch.nan_to_num(cost.detach().float(), nan=big, posinf=big, neginf=-big)
    rows, cols = linear_sum_assignment(c.cpu().numpy())
    return Matching(
        torch.as_tensor(rows, dtype=torch.long, device=device),
        torch.as_tensor(cols, dtype=torch.long, device=device),
    )


class HungarianMatcher:
    """Hungarian matcher with point-sampled mask costs (see the module docstring for the cost).

    Args:
        class_weight, mask_weight, dice_weight: weights of the three cost terms.
        num_points: points per frame for the mask costs; None uses every prediction pixel.
        classification: "softmax" (K+1 logits, last = no-object) or "sigmoid" (K focal logits).
        focal_alpha, focal_gamma: focal class-cost parameters (sigmoid head only).
    """

    def __init__(
        self,
        class_weight: float = 2.0,
        mask_weight: float = 5.0,
        dice_weight: float = 5.0,
        num_points: int | None = 12544,
        classification: Classification = "softmax",
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ) -> None:
        if classification not in ("softmax", "sigmoid"):
            raise ValueError(f"classification must be 'softmax' or 'sigmoid', got {classification!r}")
        self.class_weight = class_weight
        self.mask_weight = mask_weight
        self.dice_weight = dice_weight
        self.num_points = num_points
        self.classification = classification
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    @classmethod
    def from_config(cls, config: LossConfig, classification: Classification = "softmax") -> HungarianMatcher:
        return cls(
            class_weight=config.class_weight,
            mask_weight=config.mask_weight,
            dice_weight=config.dice_weight,
            num_points=config.num_points,
            classification=classification,
            focal_alpha=config.focal_alpha,
            focal_gamma=config.focal_gamma,
        )

    # ------------------------------------------------------------------------------------------------------
    # Costs

    def class_cost(self, class_logits: Tensor, class_ids: Tensor) -> Tensor:
        """[Q, N] unweighted class cost; class_logits [Q, K(+1)], class_ids [N]."""
        if self.classification == "softmax":
            return softmax_class_cost(class_logits, class_ids)
        return focal_class_cost(class_logits, class_ids, self.focal_alpha, self.focal_gamma)

    def _frame_points(self, mask_logits: Tensor, generator: torch.Generator | None) -> Tensor:
        """[1, P, 2] points shared by every query and target of one frame; mask_logits [Q, h, w]."""
        if self.num_points is None:
            return grid_points(mask_logits.shape[-2], mask_logits.shape[-1], mask_logits.device)
        return random_points(1, self.num_points, mask_logits.device, generator)

    def _sampled(
        self, mask_logits: Tensor, target_masks: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """Point values ([Q, P], [N, P]) of predictions [Q, h, w] and targets [N, H, W] at shared points."""
        points = self._frame_points(mask_logits, generator)
        # Shared points: sample all masks as channels of one map instead of repeating the points per mask.
        pred = point_sample(mask_logits.float().unsqueeze(0), points)[0]
        tgt = point_sample(target_masks.to(pred.device).unsqueeze(0), points)[0]
        return pred, tgt

    def _combine(self, class_cost: Tensor, point_logits: Tensor, point_labels: Tensor) -> Tensor:
        return (
            self.class_weight * class_cost
            + self.mask_weight * pairwise_bce_cost(point_logits, point_labels)
            + self.dice_weight * pairwise_dice_cost(point_logits, point_labels)
        )

    @torch.no_grad()
    def cost_matrix(
        self,
        class_logits: Tensor,
        mask_logits: Tensor,
        targets: FrameTargets,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """[Q, N] total cost of one frame.

        Args:
            class_logits: [Q, K+1] (softmax) or [Q, K] (sigmoid).
            mask_logits: [Q, h, w].
            targets: N objects with masks [N, H, W] covering the same image as the predictions.
        """
        q = class_logits.shape[0]
        if len(targets) == 0:
            return class_logits.new_zeros(q, 0, dtype=torch.float32)
        class_ids = targets.class_ids.to(class_logits.device)
        point_logits, point_labels = self._sampled(mask_logits, targets.masks, generator)
        return self._combine(self.class_cost(class_logits, class_ids), point_logits, point_labels)

    # ------------------------------------------------------------------------------------------------------
    # Matching

    def match_frame(
        self,
        class_logits: Tensor,
        mask_logits: Tensor,
        targets: FrameTargets,
        generator: torch.Generator | None = None,
    ) -> Matching:
        """Assignment of one frame: class_logits [Q, K(+1)], mask_logits [Q, h, w]."""
        return hungarian(self.cost_matrix(class_logits, mask_logits, targets, generator))

    def __call__(
        self,
        class_logits: Tensor,
        mask_logits: Tensor,
        targets: Sequence[FrameTargets],
        generator: torch.Generator | None = None,
    ) -> list[Matching]:
        """Per-image assignments: class_logits [B, Q, K(+1)], mask_logits [B, Q, h, w], B targets."""
        if class_logits.shape[0] != len(targets):
            raise ValueError(f"matcher: {class_logits.shape[0]} predictions but {len(targets)} targets")
        return [
            self.match_frame(class_logits[b], mask_logits[b], targets[b], generator)
            for b in range(len(targets))
        ]

    @torch.no_grad()
    def match_first_appearance(
        self,
        class_logits: Tensor,
        mask_logits: Tensor,
        clip: ClipTargets,
        generator: torch.Generator | None = None,
    ) -> Matching:
        """One clip-wide assignment, decided for each instance at the frame where it first appears.

        Frames are visited in order; at a frame where some instances appear for the first time, those
        instances are matched (with that frame's predictions and masks) to the queries no earlier instance has
        taken. The result holds for every frame of the clip. Instances never present stay unmatched; so do
        instances that appear when no query is left.

        Args:
            class_logits: [T, Q, K(+1)] per-frame class logits of one clip.
            mask_logits: [T, Q, h, w] per-frame mask logits.
            clip: N instances over the T frames.
        """
        t_len, q = class_logits.shape[:2]
        if clip.num_frames != t_len:
            raise ValueError(
                f"match_first_appearance: {t_len} predicted frames but {clip.num_frames} target frames"
            )
        device = class_logits.device
        first = clip.first_frames().cpu()
        free = torch.ones(q, dtype=torch.bool)
        queries: list[Tensor] = []
        instances: list[Tensor] = []
        for t in sorted({int(f) for f in first.tolist() if f >= 0}):
            new = torch.nonzero(first == t).flatten()
            available = torch.nonzero(free).flatten()
            if available.numel() == 0:
                break
            new_t = new.to(clip.masks.device)
            frame_targets = FrameTargets(clip.class_ids[new_t], clip.masks[new_t, t])
            avail_dev = available.to(device)
            cost = self.cost_matrix(
                class_logits[t, avail_dev], mask_logits[t, avail_dev], frame_targets, generator
            )
            m = hungarian(cost.cpu())
            chosen = available[m.query_indices]
            free[chosen] = False
            queries.append(chosen)
            instances.append(new[m.target_indices])
        return _sorted_matching(queries, instances, device)

    @torch.no_grad()
    def match_clip(
        self,
        class_logits: Tensor,
        mask_logits: Tensor,
        clip: ClipTargets,
        generator: torch.Generator | None = None,
    ) -> Matching:
        """One assignment for the whole clip with costs over all its frames.

        Args:
            class_logits: [Q, K(+1)] clip-level class logits, or [T, Q, K(+1)] per-frame logits which are
                averaged over time first (as DVIS++ does for the tracker's predictions).
            mask_logits: [T, Q, h, w] per-frame mask logits.
            clip: N instances over the T frames (masks empty where absent: a query that predicts a mask there
                pays for it).
        """
        if class_logits.dim() == 3:
            class_logits = class_logits.float().mean(0)
        t_len, q = mask_logits.shape[:2]
        if clip.num_frames != t_len:
            raise ValueError(f"match_clip: {t_len} predicted frames but {clip.num_frames} target frames")
        if len(clip) == 0:
            return Matching.empty(class_logits.device)
        logits_per_frame, labels_per_frame = [], []
        for t in range(t_len):
            pred, tgt = self._sampled(mask_logits[t], clip.masks[:, t], generator)
            logits_per_frame.append(pred)
            labels_per_frame.append(tgt)
        point_logits = torch.cat(logits_per_frame, dim=1)  # [Q, T*P]
        point_labels = torch.cat(labels_per_frame, dim=1)  # [N, T*P]
        class_cost = self.class_cost(class_logits, clip.class_ids.to(class_logits.device))
        return hungarian(self._combine(class_cost, point_logits, point_labels))


def _sorted_matching(queries: list[Tensor], instances: list[Tensor], device: torch.device) -> Matching:
    if not queries:
        return Matching.empty(device)
    q = torch.cat(queries)
    n = torch.cat(instances)
    order = torch.argsort(q)
    return Matching(q[order].to(device), n[order].to(device))
