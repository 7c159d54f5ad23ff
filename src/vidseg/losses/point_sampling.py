"""Point sampling of masks at normalised coordinates (PointRend-style), used by the matcher and the criterion.

Coordinates are (x, y) in [0, 1] over the whole tensor, with `align_corners=False` semantics: pixel j of a
W-wide map has its centre at (j + 0.5) / W. A prediction at 1/4 resolution and a target at full (padded)
resolution that cover the same image are therefore sampled at the same image locations.

Every random draw takes an optional `torch.Generator`; numbers are drawn on the generator's device and moved,
so a CPU generator also drives sampling for CUDA tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def point_sample(inputs: Tensor, points: Tensor) -> Tensor:
    """Bilinearly sample maps at normalised points.

    Args:
        inputs: [N, C, H, W] or [N, H, W] maps (bool is sampled as float).
        points: [N, P, 2] (x, y) in [0, 1].

    Returns:
        [N, C, P], or [N, P] when `inputs` is [N, H, W].
    """
    squeeze = inputs.dim() == 3
    if squeeze:
        inputs = inputs.unsqueeze(1)
    if not inputs.is_floating_point():
        inputs = inputs.float()
    grid = (2.0 * points.to(inputs.dtype) - 1.0).unsqueeze(2)  # [N, P, 1, 2] in [-1, 1]
    out = F.grid_sample(inputs, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = out.squeeze(3)  # [N, C, P]
    return out.squeeze(1) if squeeze else out


def random_points(
    n: int, num_points: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None
) -> Tensor:
    """[n, num_points, 2] uniform random (x, y) in [0, 1)."""
    gen_device = generator.device if generator is not None else device
    return torch.rand(n, num_points, 2, generator=generator, device=gen_device).to(device)


def grid_points(height: int, width: int, device: torch.device | str = "cpu") -> Tensor:
    """[1, height*width, 2] the centres of every pixel of a height x width map, row-major.

    Sampling a map of that size at these points returns its pixels exactly; used instead of random points when
    `num_points` is None (every pixel counts, no randomness).
    """
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1).unsqueeze(0)


def logit_uncertainty(logits: Tensor) -> Tensor:
    """Uncertainty of binary mask logits (any shape): -|logit|, largest where the logit is closest to 0."""
    return -logits.abs()


def uncertain_points(
    mask_logits: Tensor,
    num_points: int,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Importance-sampled points: the most uncertain of an oversampled random set, plus uniform random points.

    `int(oversample_ratio * num_points)` random candidates are scored with `logit_uncertainty`; the
    `int(importance_sample_ratio * num_points)` most uncertain are kept and the rest of the `num_points` are
    fresh uniform points (so every location keeps some probability of being supervised).

    Args:
        mask_logits: [N, H, W] or [N, 1, H, W] mask logits (no gradient is needed).
        num_points: P points per mask.

    Returns:
        [N, P, 2] (x, y) in [0, 1].
    """
    if mask_logits.dim() == 3:
        mask_logits = mask_logits.unsqueeze(1)
    n, device = mask_logits.shape[0], mask_logits.device
    num_candidates = max(int(oversample_ratio * num_points), num_points)
    num_uncertain = min(int(importance_sample_ratio * num_points), num_points)
    num_random = num_points - num_uncertain
    candidates = random_points(n, num_candidates, device, generator)
    scores = logit_uncertainty(point_sample(mask_logits.detach(), candidates)[:, 0])  # [N, candidates]
    top = scores.topk(num_uncertain, dim=1).indices  # [N, num_uncertain]
    chosen = torch.gather(candidates, 1, top.unsqueeze(-1).expand(-1, -1, 2))
    if num_random > 0:
        chosen = torch.cat([chosen, random_points(n, num_random, device, generator)], dim=1)
    return chosen
