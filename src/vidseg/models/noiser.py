"""Denoising training for the referring tracker (DVIS++): corrupt the initial association.

At train time, for frames t >= 1, the tracker's initial slot content normally comes from MinVIS matching of
the current segmenter queries to the previous frame. With probability `ratio` per frame and per video the
noiser replaces it with a deliberately wrong one, so the tracker must learn to recover the right object from
the reference through attention instead of trusting the matching.

Modes:
* `wa` (weighted average, the DVIS++ default): for a random permutation pi of the Q current queries and
  w_i ~ U(0, 1), slot i starts from w_i e_i + (1 - w_i) e_pi(i); its assignment is i if w_i >= 0.5 else pi(i).
* `rs` (random shuffle): slot i starts from e_pi(i), assignment pi(i).
* `none`: never noise.

The returned assignment replaces the matching: it reorders the segmenter predictions used for guided
matching and becomes the association reference for the next frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

NoiseMode = Literal["none", "wa", "rs"]


@dataclass
class NoisedInit:
    """Initial tracker slots after (maybe) noising.

    Attributes:
        init: [B, Q, C] initial slot content.
        indices: [B, Q] int64 segmenter query each slot is assigned to.
        noised: [B] bool, which videos of the batch were noised this frame.
    """

    init: Tensor
    indices: Tensor
    noised: Tensor


def weighted_average_noise(
    queries: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """The `wa` corruption of one frame.

    Args:
        queries: [B, Q, C] current segmenter queries (segmenter order, un-normed).
        generator: CPU generator for the permutation and the weights.

    Returns:
        init [B, Q, C] and indices [B, Q] int64.
    """
    b, q, _ = queries.shape
    perm = torch.stack([torch.randperm(q, generator=generator) for _ in range(b)]).to(queries.device)
    weights = torch.rand(b, q, 1, generator=generator).to(queries.device, queries.dtype)
    partner = torch.gather(queries, 1, perm[..., None].expand_as(queries))
    init = weights * queries + (1.0 - weights) * partner
    own = torch.arange(q, device=queries.device).expand(b, q)
    indices = torch.where(weights[..., 0] >= 0.5, own, perm)
    return init, indices


def random_shuffle_noise(queries: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """The `rs` corruption: [B, Q, C] -> init [B, Q, C] (the queries permuted), indices [B, Q]."""
    b, q, _ = queries.shape
    perm = torch.stack([torch.randperm(q, generator=generator) for _ in range(b)]).to(queries.device)
    return torch.gather(queries, 1, perm[..., None].expand_as(queries)), perm


class Noiser:
    """Per-frame, per-video Bernoulli(`ratio`) choice between the matched init and a corrupted one."""

    def __init__(self, mode: NoiseMode = "wa", ratio: float = 0.5):
        if mode not in ("none", "wa", "rs"):
            raise ValueError(f"unknown noise mode {mode!r} (expected none, wa or rs)")
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"noise ratio must be in [0, 1], got {ratio}")
        self.mode = mode
        self.ratio = ratio

    def __call__(
        self, queries: Tensor, matched: Tensor, generator: torch.Generator | None = None
    ) -> NoisedInit:
        """Args:
        queries: [B, Q, C] current segmenter queries in segmenter order (un-normed).
        matched: [B, Q] int64 assignment from MinVIS matching.
        generator: CPU generator; every random draw goes through it.
        """
        b = queries.shape[0]
        clean = torch.gather(queries, 1, matched[..., None].expand_as(queries))
        if self.mode == "none" or self.ratio == 0.0:
            return NoisedInit(clean, matched, torch.zeros(b, dtype=torch.bool, device=queries.device))
        fire = (torch.rand(b, generator=generator) < self.ratio).to(queries.device)
        noise_fn = weighted_average_noise if self.mode == "wa" else random_shuffle_noise
        noisy, noisy_idx = noise_fn(queries, generator)
        init = torch.where(fire[:, None, None], noisy, clean)
        indices = torch.where(fire[:, None], noisy_idx, matched)
        return NoisedInit(init, indices, fire)
