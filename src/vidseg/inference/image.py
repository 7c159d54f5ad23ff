"""Image (per-frame) post-processing of Mask2Former predictions: semantic, instance and panoptic results.

Semantics follow Mask2Former's image inference:

* Resizing: mask logits at 1/4 of the padded batch tensor are resized bilinearly (align_corners=False) to the
  padded size, cropped to the image's valid (unpadded) region, then resized bilinearly to the requested output
  size (usually the original image size). All three tasks then work at the output size.
* Class probabilities: softmax over K+1 with the no-object column dropped (softmax head) or the sigmoid of
  the K logits (sigmoid/focal head).
* Semantic: per-pixel class scores sum_q p_q[k] * sigmoid(m_q); the class map is their argmax.
* Instance: top-k over all (query, class) pairs of the Q x K probabilities (a query may yield several labels);
  mask = logit > 0; score = class probability x mean sigmoid inside the mask. Optionally thing classes only.
* Panoptic: queries whose best label is not no-object and whose score exceeds `object_mask_threshold`
  survive; each pixel goes to the survivor with the highest score x sigmoid(mask); a survivor is dropped if
  the area it wins is < `overlap_threshold` of its own (sigmoid >= 0.5) area, else its segment is the won
  pixels where its own mask is >= 0.5; all segments of one stuff class share one id; ids are consecutive from
  1 and 0 is void.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vidseg.config import InferenceConfig
from vidseg.inference.panoptic import merge_panoptic
from vidseg.models.outputs import LayerPrediction, SegmenterOutput
from vidseg.structures import FrameResult, PanopticSegment, encode_rle
from vidseg.types import FRAME_TASK, Classification, FrameTask

# Which classes are things: a set of class indices, or a [K] bool mask; None means every class is a thing.
ThingClasses = set[int] | frozenset[int] | Sequence[bool] | Tensor | None


def thing_mask(thing_classes: ThingClasses, num_classes: int, device: torch.device | str = "cpu") -> Tensor:
    """[K] bool, True for thing classes."""
    if thing_classes is None:
        return torch.ones(num_classes, dtype=torch.bool, device=device)
    if isinstance(thing_classes, (set, frozenset)):
        mask = torch.zeros(num_classes, dtype=torch.bool, device=device)
        ids = [c for c in thing_classes if 0 <= c < num_classes]
        if len(ids) != len(thing_classes):
            raise ValueError(f"thing_classes {sorted(thing_classes)} outside 0..{num_classes - 1}")
        mask[ids] = True
        return mask
    mask = torch.as_tensor(thing_classes, dtype=torch.bool, device=device)
    if tuple(mask.shape) != (num_classes,):
        raise ValueError(f"thing_classes mask of shape {tuple(mask.shape)}, expected ({num_classes},)")
    return mask


def class_probabilities(class_logits: Tensor, classification: Classification = "softmax") -> Tensor:
    """[..., K] class probabilities from [..., K+1] (softmax, no-object dropped) or [..., K] (sigmoid)."""
    if classification == "softmax":
        return class_logits.float().softmax(-1)[..., :-1]
    return class_logits.float().sigmoid()


def resize_mask_logits(
    mask_logits: Tensor,
    padded_size: tuple[int, int] | None = None,
    image_size: tuple[int, int] | None = None,
    output_size: tuple[int, int] | None = None,
) -> Tensor:
    """Bring mask logits [Q, h, w] from the mask-feature grid to the output image, as Mask2Former does.

    Args:
        padded_size: (H_pad, W_pad) of the padded batch tensor the model saw; default (4h, 4w).
        image_size: (H_img, W_img) valid region of this image inside the padded tensor; default padded_size.
        output_size: (H_out, W_out) of the result; default image_size.

    Returns:
        [Q, H_out, W_out] float logits.
    """
    h, w = mask_logits.shape[-2:]
    padded_size = padded_size or (4 * h, 4 * w)
    image_size = image_size or padded_size
    output_size = output_size or image_size
    x = mask_logits.float().unsqueeze(0)
    x = F.interpolate(x, size=tuple(padded_size), mode="bilinear", align_corners=False)
    x = x[..., : image_size[0], : image_size[1]]
    x = F.interpolate(x, size=tuple(output_size), mode="bilinear", align_corners=False)
    return x[0]


def semantic_scores(
    class_logits: Tensor, mask_logits: Tensor, classification: Classification = "softmax"
) -> Tensor:
    """[K, H, W] class scores sum_q p_q[k] sigmoid(m_q); class_logits [Q, K(+1)], mask_logits [Q, H, W]."""
    probs = class_probabilities(class_logits, classification)
    return torch.einsum("qk,qhw->khw", probs, mask_logits.float().sigmoid())


def semantic_inference(
    class_logits: Tensor, mask_logits: Tensor, classification: Classification = "softmax"
) -> Tensor:
    """[H, W] int64 class map: argmax of `semantic_scores`."""
    return semantic_scores(class_logits, mask_logits, classification).argmax(0)


@dataclass
class InstancePrediction:
    """Instances of one image, by decreasing score.

    Attributes:
        scores: [N] float32 class probability x mean mask probability.
        class_ids: [N] int64.
        masks: [N, H, W] bool (logit > 0).
        query_indices: [N] int64 query each instance comes from (may repeat).
    """

    scores: Tensor
    class_ids: Tensor
    masks: Tensor
    query_indices: Tensor


def instance_inference(
    class_logits: Tensor,
    mask_logits: Tensor,
    classification: Classification = "softmax",
    topk: int = 100,
    thing_classes: ThingClasses = None,
    things_only: bool = False,
) -> InstancePrediction:
    """Top-k (query, class) instances of one image.

    Args:
        class_logits: [Q, K+1] (softmax) or [Q, K] (sigmoid).
        mask_logits: [Q, H, W] at the output size.
        topk: number of (query, class) pairs kept (at most Q*K).
        thing_classes, things_only: with `things_only`, pairs of stuff classes are dropped after the top-k
            (Mask2Former does this when panoptic inference is also on).
    """
    probs = class_probabilities(class_logits, classification)  # [Q, K]
    q, k = probs.shape
    scores, flat = probs.flatten().topk(min(topk, q * k), sorted=True)
    labels = flat % k
    queries = torch.div(flat, k, rounding_mode="floor")
    if things_only:
        keep = thing_mask(thing_classes, k, probs.device)[labels]
        scores, labels, queries = scores[keep], labels[keep], queries[keep]
    logits = mask_logits[queries].float()
    masks = logits > 0
    mask_scores = (logits.sigmoid() * masks).flatten(1).sum(1) / (masks.flatten(1).sum(1) + 1e-6)
    scores = scores * mask_scores
    order = scores.argsort(descending=True, stable=True)
    return InstancePrediction(scores[order], labels[order], masks[order], queries[order])


@dataclass
class PanopticPrediction:
    """Panoptic segmentation of one image.

    Attributes:
        panoptic: [H, W] int32 segment ids, 0 = void.
        segments: one entry per id 1..S, in id order.
        scores: [S] float32 score of the query that created each segment.
        query_indices: [S] int64 that query.
    """

    panoptic: Tensor
    segments: list[PanopticSegment]
    scores: Tensor
    query_indices: Tensor


def panoptic_inference(
    class_logits: Tensor,
    mask_logits: Tensor,
    classification: Classification = "softmax",
    thing_classes: ThingClasses = None,
    object_mask_threshold: float = 0.8,
    overlap_threshold: float = 0.8,
) -> PanopticPrediction:
    """Mask2Former panoptic merge of one image (see the module docstring).

    Args:
        class_logits: [Q, K+1] (softmax) or [Q, K] (sigmoid).
        mask_logits: [Q, H, W] at the output size.
        thing_classes: thing classes (others are stuff and merge per class); None = all things.
    """
    if classification == "softmax":
        num_classes = class_logits.shape[-1] - 1
        scores, labels = class_logits.float().softmax(-1).max(-1)
        keep = labels.ne(num_classes) & (scores > object_mask_threshold)
    else:
        num_classes = class_logits.shape[-1]
        scores, labels = class_logits.float().sigmoid().max(-1)
        keep = scores > object_mask_threshold
    is_thing = thing_mask(thing_classes, num_classes, "cpu").tolist()
    kept = torch.nonzero(keep).flatten()
    probs = mask_logits[kept].float().sigmoid()  # [N, H, W]
    merge = merge_panoptic(scores[kept], labels[kept], lambda t: probs, 1, is_thing, overlap_threshold)
    return PanopticPrediction(
        merge.draw(probs),
        merge.segments,
        merge.scores[merge.segment_candidate] if merge.segments else torch.zeros(0),
        kept.cpu()[merge.segment_candidate] if merge.segments else torch.zeros(0, dtype=torch.long),
    )


# ---------------------------------------------------------------------------------------------------------
# FrameResult conversion


def semantic_result(frame_index: int, semantic: Tensor) -> FrameResult:
    """FrameResult carrying a [H, W] class map."""
    sem = semantic.cpu().numpy().astype(np.int32)
    return FrameResult(frame_index=frame_index, height=sem.shape[0], width=sem.shape[1], semantic=sem)


def instance_result(frame_index: int, pred: InstancePrediction) -> FrameResult:
    """FrameResult of instances; track ids are 1..N in score order (an image has no identities)."""
    masks = pred.masks.cpu().numpy()
    n = masks.shape[0]
    return FrameResult.from_masks(
        frame_index,
        masks,
        track_ids=range(1, n + 1),
        class_ids=pred.class_ids.cpu().tolist(),
        scores=pred.scores.cpu().tolist(),
    )


def panoptic_result(frame_index: int, pred: PanopticPrediction) -> FrameResult:
    """FrameResult with the panoptic map and segments; thing segments are also listed as objects whose track
    id is their segment id."""
    pan = pred.panoptic.cpu().numpy().astype(np.int32)
    things = [(i, s) for i, s in enumerate(pred.segments) if s.is_thing]
    return FrameResult(
        frame_index=frame_index,
        height=pan.shape[0],
        width=pan.shape[1],
        masks=[encode_rle(pan == s.id) for _, s in things],
        track_ids=np.asarray([s.id for _, s in things], np.int64),
        class_ids=np.asarray([s.category_id for _, s in things], np.int64),
        scores=np.asarray([float(pred.scores[i]) for i, _ in things], np.float32),
        panoptic=pan,
        segments=list(pred.segments),
    )


class ImagePostprocessor:
    """Turns a batch of segmenter predictions into `FrameResult`s for one task.

    Args:
        task: "semantic", "instance" or "panoptic" (video aliases "vss", "vis", "vps" map to them).
        classification: "softmax" (K+1 logits) or "sigmoid" (K logits).
        thing_classes: thing classes (set of indices or [K] bool); None = all things.
        object_mask_threshold, overlap_threshold: panoptic thresholds.
        test_topk: instances kept per image.
        instance_things_only: drop stuff classes from instance results.
    """

    def __init__(
        self,
        task: str = "panoptic",
        classification: Classification = "softmax",
        thing_classes: ThingClasses = None,
        object_mask_threshold: float = 0.8,
        overlap_threshold: float = 0.8,
        test_topk: int = 100,
        instance_things_only: bool = False,
    ) -> None:
        if task not in FRAME_TASK:
            raise ValueError(f"unknown task {task!r}; expected one of {sorted(FRAME_TASK)}")
        self.task: FrameTask = FRAME_TASK[task]
        self.classification = classification
        self.thing_classes = thing_classes
        self.object_mask_threshold = object_mask_threshold
        self.overlap_threshold = overlap_threshold
        self.test_topk = test_topk
        self.instance_things_only = instance_things_only

    @classmethod
    def from_config(
        cls,
        config: InferenceConfig,
        classification: Classification = "softmax",
        thing_classes: ThingClasses = None,
        task: str | None = None,
    ) -> ImagePostprocessor:
        return cls(
            task=task or config.task,
            classification=classification,
            thing_classes=thing_classes,
            object_mask_threshold=config.object_mask_threshold,
            overlap_threshold=config.overlap_threshold,
            test_topk=config.test_topk,
        )

    def frame(
        self,
        class_logits: Tensor,
        mask_logits: Tensor,
        frame_index: int = 0,
        padded_size: tuple[int, int] | None = None,
        image_size: tuple[int, int] | None = None,
        output_size: tuple[int, int] | None = None,
    ) -> FrameResult:
        """One image: class_logits [Q, K(+1)], mask_logits [Q, h, w] on the mask-feature grid.

        Sizes as in `resize_mask_logits`.
        """
        masks = resize_mask_logits(mask_logits, padded_size, image_size, output_size)
        if self.task == "semantic":
            return semantic_result(frame_index, semantic_inference(class_logits, masks, self.classification))
        if self.task == "instance":
            pred = instance_inference(
                class_logits,
                masks,
                self.classification,
                self.test_topk,
                self.thing_classes,
                self.instance_things_only,
            )
            return instance_result(frame_index, pred)
        pan = panoptic_inference(
            class_logits,
            masks,
            self.classification,
            self.thing_classes,
            self.object_mask_threshold,
            self.overlap_threshold,
        )
        return panoptic_result(frame_index, pan)

    @torch.no_grad()
    def __call__(
        self,
        output: SegmenterOutput | LayerPrediction,
        padded_size: tuple[int, int] | None = None,
        image_sizes: Sequence[tuple[int, int]] | None = None,
        output_sizes: Sequence[tuple[int, int]] | None = None,
        frame_indices: Sequence[int] | None = None,
    ) -> list[FrameResult]:
        """A batch: class_logits [B, Q, K(+1)], mask_logits [B, Q, h, w].

        Args:
            padded_size: (H_pad, W_pad) of the batch tensor; default 4x the mask grid.
            image_sizes: B valid (H, W) regions; default the padded size.
            output_sizes: B output sizes (usually the original frame sizes); default the image sizes.
            frame_indices: B frame indices; default 0..B-1.
        """
        b = output.class_logits.shape[0]
        results = []
        for i in range(b):
            results.append(
                self.frame(
                    output.class_logits[i],
                    output.mask_logits[i],
                    frame_indices[i] if frame_indices is not None else i,
                    padded_size,
                    image_sizes[i] if image_sizes is not None else None,
                    output_sizes[i] if output_sizes is not None else None,
                )
            )
        return results
