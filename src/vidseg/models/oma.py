"""Object Masked Attention (OMA): randomly hide background segmenter queries from a cross-attention.

Paper: "Masked Video Consistency and Object Masked Attention", §3.3 (Eq. 7-8). The refiner's (optionally the
tracker's) cross-attention has the frame's segmenter queries as keys/values. OMA adds a mask M to the
attention logits, softmax(M + QK^T / sqrt(C)) V, with

    M_i = 0                    if key i is a foreground object,
    M_i = -inf * I_{i,γ}       if key i is background, I_{i,γ} ~ Bernoulli(γ = drop_prob).

Parameter-free (plain functions and a config-holding class, no `nn.Module`).

Interpretation choices (all in `OMAConfig`):
* Background: "a threshold of 0.6 for the empty class" — key i is background when the softmax probability
  of the segmenter's no-object class is >= 0.6 (`background_rule="no_object"`, default). `"max_class"`
  calls it background when the best real-class probability is < threshold (the reading of the spec, and
  the only one for sigmoid heads that have no no-object logit).
* Granularity: Eq. 8 indexes M by the key only, so one draw per key is shared by every query row and every
  head of that attention (`granularity="key"`, default). `"row"` draws per (row, key).
* Independence: draws are independent per attention instance, i.e. per frame of every clip (the refiner's
  cross-attention batch is B x T), and a new draw is made on every call.
* Guard: a row whose keys would all be dropped (every key background and every draw 1) is opened fully,
  i.e. that frame/row attends as without OMA — the convention Mask2Former uses for empty masks.
* Inference: no masking, unless `masked_inference` (paper Table 6: drop "with the same ratio").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vidseg.config import OMAConfig

__all__ = ["OMAMask", "ObjectMaskedAttention", "background_keys", "oma_mask"]


def background_keys(
    class_logits: Tensor, *, threshold: float = 0.6, rule: str = "no_object", softmax: bool = True
) -> Tensor:
    """Which keys (segmenter queries) are background.

    Args:
        class_logits: [N, Lk, K+1] (softmax head, last = no-object) or [N, Lk, K] (sigmoid head).
        threshold: 0.6 in the paper.
        rule: "no_object" -> p(no-object) >= threshold; "max_class" -> max real-class prob < threshold.
        softmax: whether the logits are a softmax head with a no-object column.

    Returns:
        bool [N, Lk], True = background. Computed without gradient.
    """
    with torch.no_grad():
        if softmax:
            probs = class_logits.float().softmax(-1)
            if rule == "no_object":
                return probs[..., -1] >= threshold
            if rule == "max_class":
                return probs[..., :-1].amax(-1) < threshold
        else:
            if rule == "no_object":
                raise ValueError("a sigmoid class head has no no-object logit; use rule='max_class'")
            if rule == "max_class":
                return class_logits.float().sigmoid().amax(-1) < threshold
    raise ValueError(f"unknown background rule {rule!r}; expected 'no_object' or 'max_class'")


@dataclass
class OMAMask:
    """One OMA draw for a batch of N attention instances (e.g. N = B x T frames).

    Attributes:
        dropped: bool [N, Lq, Lk], True = key hidden from that query row.
        additive: [N, Lq, Lk] float, 0 where kept and `mask_value` (-inf by default) where dropped,
            for `softmax(additive + QK^T / sqrt(d))` (the `attn_mask` of `vidseg.models.attention.Attention`).
    """

    dropped: Tensor
    additive: Tensor


def oma_mask(
    background: Tensor,
    num_queries: int,
    *,
    drop_prob: float = 0.5,
    active: bool = True,
    granularity: str = "key",
    generator: torch.Generator | None = None,
    mask_value: float = float("-inf"),
    dtype: torch.dtype = torch.float32,
) -> OMAMask:
    """Draw the Eq. 8 mask.

    Args:
        background: bool [N, Lk] from `background_keys`; foreground keys are never dropped.
        num_queries: Lq, rows of the attention (e.g. tracked objects of the refiner).
        drop_prob: γ / d, probability that a background key is dropped.
        active: False -> nothing is dropped (inference without `masked_inference`).
        granularity: "key" (one draw per key, shared by rows) or "row" (one per row and key).
        generator: the randomness; drawn on its device, then moved to `background`'s.
        mask_value: what dropped positions get in `additive`.

    Returns:
        `OMAMask` with [N, Lq, Lk] tensors; no row is fully dropped.
    """
    if background.dim() != 2:
        raise ValueError(f"background must be [N, Lk], got {tuple(background.shape)}")
    if not 0.0 <= drop_prob <= 1.0:
        raise ValueError(f"drop_prob must be in [0, 1], got {drop_prob}")
    n, lk = background.shape
    device = background.device
    if not active or drop_prob == 0.0:
        dropped = torch.zeros(n, num_queries, lk, dtype=torch.bool, device=device)
    else:
        gen_device = generator.device if generator is not None else torch.device("cpu")
        if granularity == "key":
            draw = torch.rand(n, 1, lk, generator=generator, device=gen_device) < drop_prob
        elif granularity == "row":
            draw = torch.rand(n, num_queries, lk, generator=generator, device=gen_device) < drop_prob
        else:
            raise ValueError(f"unknown granularity {granularity!r}; expected 'key' or 'row'")
        dropped = (draw.to(device) & background[:, None, :]).expand(n, num_queries, lk)
        # A fully dropped row would make the softmax NaN; such a row attends as if OMA were off.
        dropped = dropped & ~dropped.all(-1, keepdim=True)
    additive = torch.zeros(dropped.shape, dtype=dtype, device=device).masked_fill(dropped, mask_value)
    return OMAMask(dropped=dropped, additive=additive)


class ObjectMaskedAttention:
    """OMA as configured: segmenter class logits -> `OMAMask` for one cross-attention call.

    Holds the config only (no parameters, no state); the caller passes its `training` flag and generator.
    """

    def __init__(self, config: OMAConfig, *, softmax: bool = True):
        """softmax: whether the segmenter's class head is softmax with a no-object logit (Mask2Former)."""
        self.config = config
        self.softmax = softmax

    def __call__(
        self,
        key_class_logits: Tensor,
        num_queries: int,
        *,
        training: bool,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> OMAMask:
        """key_class_logits: [N, Lk, K(+1)] logits of the segmenter queries used as keys -> [N, Lq, Lk]."""
        cfg = self.config
        background = background_keys(
            key_class_logits, threshold=cfg.background_threshold, rule=cfg.background_rule, softmax=self.softmax
        )
        active = cfg.enabled and (training or cfg.masked_inference)
        return oma_mask(
            background, num_queries, drop_prob=cfg.drop_prob, active=active, granularity=cfg.granularity,
            generator=generator, dtype=dtype,
        )
