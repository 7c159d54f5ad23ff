"""Masked Video Consistency (MVC): patch / tube masking of the input and the Eq. 4 loss combination.

Paper: "Masked Video Consistency and Object Masked Attention", §3.2 (Eq. 1-5). Parameter-free: nothing here
is an `nn.Module`, so a model trained with MVC has exactly the parameters of one trained without it.

* Eq. 1: the (padded) image is cut into a grid of b x b cells; cell (i, j) is kept iff v > r, v ~ U(0, 1)
  (so a fraction r of the cells is masked on average). Cells at the right/bottom border may be cut short
  when H or W is not a multiple of b.
* Eq. 2/5: masked image = M ⊙ I. Images are normalised, so the fill value 0 is the dataset mean colour.
  MVC-1 (segmenter) draws one mask per frame; MVC-2 (tracker/refiner) draws one mask per clip and applies it
  to every frame (tube masking).
* Eq. 4: (1/T) Σ_t (1/N) Σ_k [I_k L_k + (1 - I_k) λ L^M_k] with I_k ~ Bernoulli: unit k contributes its
  clean loss or λ times its masked loss. With one forward pass on a batch where the units with I_k = 0 were
  masked, this is the ordinary loss with per-unit weights 1 or λ; for λ = 1 it is the plain loss of the
  mixed batch. The stages compute it with the criterion (`vidseg.training.stages.mvc_frame_loss`).

Interpretation choices (all in `MVCConfig`):
* `mask_prob`: the paper writes I_{k,τ} = 1 (clean loss) with probability τ but also calls τ "the
  probability of adding image-level masks". We name the knob by its effect, the probability that a unit's
  input is masked, and default it to 0.5, the one value for which both readings of τ agree.
* `weight` (λ) defaults to 1.0 (not given in the paper).
* `fill` defaults to 0.0 (Eq. 2's multiplication by a 0/1 mask, in normalised space = mean colour).
* `variant`: "bernoulli" (Eq. 4 as written, one forward pass) or "both" (clean + λ·masked with two
  forward passes, as in MIC; every unit is masked in the second pass and `mask_prob` is unused).
* `indicator`: Eq. 4 indexes I by the sample k only, not by the frame t, so by default one draw covers all
  frames of a clip ("clip"); "frame" draws per frame (only for per-frame masks).
* `sampling`: "iid" follows Eq. 1 (each cell independently); "exact" masks exactly round(r · cells) cells
  per mask (MAE/MIC style), which removes the variance of the masked fraction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vidseg.config import MVCConfig

__all__ = [
    "MVCBatch",
    "MVCMasker",
    "apply_patch_mask",
    "frame_masks",
    "patch_grid",
    "patch_mask",
    "sample_indicator",
    "tube_masks",
]


def patch_grid(
    num_masks: int,
    grid_h: int,
    grid_w: int,
    *,
    ratio: float = 0.7,
    sampling: str = "iid",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Keep-grid of Eq. 1: bool [num_masks, grid_h, grid_w], True = cell kept (visible).

    `sampling="iid"`: kept iff v > ratio, v ~ U(0, 1) per cell. `sampling="exact"`: exactly
    round(ratio * grid_h * grid_w) cells masked per grid, chosen uniformly without replacement.
    Drawn on the generator's device (CPU by default).
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mask ratio must be in [0, 1], got {ratio}")
    device = generator.device if generator is not None else torch.device("cpu")
    cells = grid_h * grid_w
    v = torch.rand(num_masks, cells, generator=generator, device=device)
    if sampling == "iid":
        keep = v > ratio
    elif sampling == "exact":
        num_masked = round(ratio * cells)
        # Ranks of uniform draws are a uniform random permutation: the lowest num_masked ranks are masked.
        ranks = v.argsort(dim=1).argsort(dim=1)
        keep = ranks >= num_masked
    else:
        raise ValueError(f"unknown sampling {sampling!r}; expected 'iid' or 'exact'")
    return keep.view(num_masks, grid_h, grid_w)


def patch_mask(
    num_masks: int,
    height: int,
    width: int,
    *,
    patch_size: int = 32,
    ratio: float = 0.7,
    sampling: str = "iid",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Pixel keep-masks: bool [num_masks, 1, height, width], constant on patch_size x patch_size cells.

    The grid is ceil(H / b) x ceil(W / b) cells anchored at the top-left corner (the padded image's
    origin); border cells are cropped to the image.
    """
    if patch_size < 1:
        raise ValueError(f"patch size must be positive, got {patch_size}")
    grid_h = -(-height // patch_size)
    grid_w = -(-width // patch_size)
    grid = patch_grid(num_masks, grid_h, grid_w, ratio=ratio, sampling=sampling, generator=generator)
    if device is not None:
        grid = grid.to(device)
    pixels = grid.repeat_interleave(patch_size, dim=1).repeat_interleave(patch_size, dim=2)
    return pixels[:, None, :height, :width]


def frame_masks(
    batch: int,
    frames: int,
    height: int,
    width: int,
    *,
    patch_size: int = 32,
    ratio: float = 0.7,
    sampling: str = "iid",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """MVC-1: an independent patch mask per frame, bool [batch, frames, 1, H, W] (True = kept)."""
    masks = patch_mask(
        batch * frames, height, width, patch_size=patch_size, ratio=ratio, sampling=sampling,
        generator=generator, device=device,
    )
    return masks.view(batch, frames, 1, height, width)


def tube_masks(
    batch: int,
    frames: int,
    height: int,
    width: int,
    *,
    patch_size: int = 32,
    ratio: float = 0.7,
    sampling: str = "iid",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """MVC-2 (Eq. 5): one patch mask per clip, the same for all its frames, bool [batch, frames, 1, H, W]."""
    masks = patch_mask(
        batch, height, width, patch_size=patch_size, ratio=ratio, sampling=sampling,
        generator=generator, device=device,
    )
    return masks[:, None].expand(batch, frames, 1, height, width)


def apply_patch_mask(images: Tensor, keep: Tensor, fill: float = 0.0) -> Tensor:
    """Eq. 2: keep-mask ⊙ image. images: normalised [..., 3, H, W]; keep: bool broadcastable to it.

    Masked pixels become `fill` (0 = the mean colour after normalisation), the rest is unchanged.
    """
    return torch.where(keep, images, torch.full((), fill, dtype=images.dtype, device=images.device))


def sample_indicator(shape: tuple[int, ...], mask_prob: float, generator: torch.Generator | None = None) -> Tensor:
    """bool `shape`: True = this unit's input is masked (the 1 - I_{k,τ} of Eq. 4), with prob `mask_prob`."""
    if not 0.0 <= mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in [0, 1], got {mask_prob}")
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(shape, generator=generator, device=device) < mask_prob


@dataclass
class MVCBatch:
    """Inputs produced by `MVCMasker` for one training step.

    Attributes:
        images: [B, T, 3, H, W] (or [B, 3, H, W]) the input of the (first) forward pass. "bernoulli":
            units with `masked` True are masked, the others clean. "both": the clean images.
        masked_images: "both" only: every unit masked, the input of the second forward pass; else None.
        keep: bool [B, T, 1, H, W] (or [B, 1, H, W]) the patch mask of every frame (True = visible),
            drawn for all units whether or not they were masked.
        masked: bool [B] ("clip" indicator) or [B, T] ("frame"): which units contribute λ × their masked
            loss. "both": all True.
    """

    images: Tensor
    masked_images: Tensor | None
    keep: Tensor
    masked: Tensor


class MVCMasker:
    """Draws MVC masks for a batch of normalised (and padded) frames. Holds no parameters and no state.

    Frame-level (`mode="frame"`, MVC-1) or tube (`mode="tube"`, MVC-2) masks; see the module docstring.
    """

    def __init__(self, config: MVCConfig):
        if config.mode == "tube" and config.indicator == "frame":
            raise ValueError("tube masking applies one mask to a whole clip; use indicator='clip'")
        self.config = config

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> MVCBatch:
        """images: normalised [B, T, 3, H, W] clips or [B, 3, H, W] frames (then T = 1)."""
        cfg = self.config
        single = images.dim() == 4
        clips = images.unsqueeze(1) if single else images
        if clips.dim() != 5:
            raise ValueError(f"expected [B, 3, H, W] or [B, T, 3, H, W], got {tuple(images.shape)}")
        b, t, _, h, w = clips.shape
        draw = tube_masks if cfg.mode == "tube" else frame_masks
        keep = draw(
            b, t, h, w, patch_size=cfg.patch_size, ratio=cfg.ratio, sampling=cfg.sampling,
            generator=generator, device=images.device,
        )
        fully_masked = apply_patch_mask(clips, keep, cfg.fill)
        if cfg.variant == "both":
            masked = torch.ones(b if cfg.indicator == "clip" else (b, t), dtype=torch.bool, device=images.device)
            first, second = clips, fully_masked
        else:
            shape = (b,) if cfg.indicator == "clip" else (b, t)
            masked = sample_indicator(shape, cfg.mask_prob, generator).to(images.device)
            per_frame = masked[:, None] if cfg.indicator == "clip" else masked
            first = torch.where(per_frame[:, :, None, None, None], fully_masked, clips)
            second = None
        if single:
            first = first.squeeze(1)
            second = second.squeeze(1) if second is not None else None
            keep = keep.squeeze(1)
            masked = masked if cfg.indicator == "clip" else masked.squeeze(1)
        return MVCBatch(images=first, masked_images=second, keep=keep, masked=masked)
