"""MVC: patch / tube masks (Eq. 1, 5) and masking (Eq. 2); the Eq. 4 loss is `mvc_frame_loss` (test_video_stages)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from vidseg.config import MVCConfig, dump_yaml, from_dict, to_dict
from vidseg.training.mvc import (
    MVCMasker,
    apply_patch_mask,
    frame_masks,
    patch_grid,
    patch_mask,
    sample_indicator,
    tube_masks,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("ratio", [0.3, 0.7, 0.9])
def test_masked_cell_fraction_matches_ratio(ratio):
    grid = patch_grid(400, 10, 10, ratio=ratio, generator=_gen(1))
    masked = 1.0 - grid.float().mean().item()
    # 40 000 Bernoulli(r) cells: std <= 0.0025; 0.015 is six standard deviations.
    assert abs(masked - ratio) < 0.015


def test_exact_sampling_masks_exactly_round_r_cells():
    grid = patch_grid(50, 7, 9, ratio=0.7, sampling="exact", generator=_gen(2))
    assert torch.equal((~grid).flatten(1).sum(1), torch.full((50,), round(0.7 * 63)))
    # ... and the masked cells differ between masks.
    assert not torch.equal(grid[0], grid[1])


def test_patch_mask_is_constant_on_cells_and_cropped_to_the_image():
    keep = patch_mask(3, 70, 100, patch_size=32, ratio=0.5, generator=_gen(3))
    assert keep.shape == (3, 1, 70, 100) and keep.dtype == torch.bool
    grid = patch_grid(3, 3, 4, ratio=0.5, generator=_gen(3))  # same draws, ceil(70/32) x ceil(100/32)
    for i in range(3):
        for j in range(4):
            cell = keep[:, 0, 32 * i : 32 * (i + 1), 32 * j : 32 * (j + 1)]
            assert torch.equal(cell, grid[:, i, j, None, None].expand_as(cell))


def test_patch_mask_rejects_bad_arguments():
    with pytest.raises(ValueError, match="ratio"):
        patch_grid(1, 2, 2, ratio=1.5)
    with pytest.raises(ValueError, match="sampling"):
        patch_grid(1, 2, 2, sampling="blocks")
    with pytest.raises(ValueError, match="patch size"):
        patch_mask(1, 8, 8, patch_size=0)


def test_tube_masks_identical_across_frames_and_different_across_clips():
    keep = tube_masks(6, 5, 64, 96, patch_size=16, generator=_gen(4))
    assert keep.shape == (6, 5, 1, 64, 96)
    for t in range(1, 5):
        assert torch.equal(keep[:, t], keep[:, 0])
    firsts = keep[:, 0].flatten(1)
    for a in range(6):
        for b in range(a + 1, 6):
            assert not torch.equal(firsts[a], firsts[b])


def test_frame_masks_differ_across_frames():
    keep = frame_masks(2, 4, 64, 64, patch_size=16, generator=_gen(5))
    assert keep.shape == (2, 4, 1, 64, 64)
    assert not torch.equal(keep[0, 0], keep[0, 1]) and not torch.equal(keep[1, 2], keep[1, 3])


def test_masked_image_is_fill_where_masked_and_image_elsewhere():
    images = torch.randn(2, 3, 3, 40, 50)
    keep = frame_masks(2, 3, 40, 50, patch_size=8, generator=_gen(6))
    out = apply_patch_mask(images, keep)
    full = keep.expand_as(images)
    assert torch.equal(out[~full], torch.zeros_like(out[~full]))
    assert torch.equal(out[full], images[full])
    # Eq. 2 literally: the 0/1 mask times the image.
    assert torch.equal(out, keep.to(images.dtype) * images)
    assert torch.equal(apply_patch_mask(images, keep, fill=-1.5)[~full], torch.full_like(out[~full], -1.5))


def test_masker_bernoulli_masks_exactly_the_indicated_clips():
    cfg = MVCConfig(enabled=True, patch_size=8, mask_prob=0.5)
    images = torch.randn(16, 2, 3, 32, 32)
    batch = MVCMasker(cfg)(images, _gen(7))
    assert batch.masked.shape == (16,) and batch.masked_images is None
    assert 0 < int(batch.masked.sum()) < 16
    for k in range(16):
        expected = apply_patch_mask(images[k], batch.keep[k]) if batch.masked[k] else images[k]
        assert torch.equal(batch.images[k], expected)


def test_masker_indicator_frequency_is_mask_prob():
    indicator = sample_indicator((20000,), 0.3, _gen(8))
    assert abs(indicator.float().mean().item() - 0.3) < 0.02


def test_masker_is_deterministic_given_the_generator():
    masker = MVCMasker(MVCConfig(mode="tube", patch_size=8))
    images = torch.randn(4, 3, 3, 32, 32)
    a, b = masker(images, _gen(9)), masker(images, _gen(9))
    assert torch.equal(a.images, b.images) and torch.equal(a.keep, b.keep) and torch.equal(a.masked, b.masked)
    assert not torch.equal(a.keep, masker(images, _gen(10)).keep)


def test_masker_tube_mode_uses_one_mask_per_clip():
    batch = MVCMasker(MVCConfig(mode="tube", patch_size=8, mask_prob=1.0))(torch.randn(3, 4, 3, 32, 32), _gen(11))
    assert batch.masked.all()
    for t in range(4):
        assert torch.equal(batch.keep[:, t], batch.keep[:, 0])
    with pytest.raises(ValueError, match="tube"):
        MVCMasker(MVCConfig(mode="tube", indicator="frame"))


def test_masker_frame_indicator_and_single_images():
    cfg = MVCConfig(patch_size=8, indicator="frame")
    batch = MVCMasker(cfg)(torch.randn(8, 3, 3, 16, 16), _gen(12))
    assert batch.masked.shape == (8, 3)
    single = MVCMasker(MVCConfig(patch_size=8))(torch.randn(5, 3, 16, 16), _gen(13))
    assert single.images.shape == (5, 3, 16, 16) and single.keep.shape == (5, 1, 16, 16)
    assert single.masked.shape == (5,)


def test_masker_both_variant_keeps_clean_and_masks_every_unit():
    images = torch.randn(3, 2, 3, 32, 32)
    batch = MVCMasker(MVCConfig(variant="both", patch_size=8))(images, _gen(14))
    assert torch.equal(batch.images, images) and batch.masked.all()
    assert torch.equal(batch.masked_images, apply_patch_mask(images, batch.keep))


def test_mvc_is_parameter_free_and_gradients_are_finite():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1))
    count = sum(p.numel() for p in model.parameters())
    masker = MVCMasker(MVCConfig(enabled=True, patch_size=8, mask_prob=1.0))
    assert not isinstance(masker, nn.Module)
    batch = masker(torch.randn(4, 3, 32, 32), _gen(16))
    losses = model(batch.images).flatten(1).pow(2).mean(1)
    losses.mean().backward()
    assert sum(p.numel() for p in model.parameters()) == count
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_mvc_config_round_trips_and_defaults_follow_the_paper():
    cfg = MVCConfig()
    assert (cfg.patch_size, cfg.ratio, cfg.fill, cfg.variant) == (32, 0.7, 0.0, "bernoulli")
    tube = dataclasses.replace(cfg, mode="tube", weight=0.5)
    assert from_dict(MVCConfig, to_dict(tube)) == tube
    assert "mode: tube" in dump_yaml(tube)
