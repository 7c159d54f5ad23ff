"""DINOv2 ViT, its plain backbone and the DVIS++ ViT-Adapter, on tiny configurations."""

from __future__ import annotations

import pytest
import torch

from vidseg.config import BackboneConfig
from vidseg.errors import ConfigError
from vidseg.models.backbones import build_backbone
from vidseg.models.backbones.base import check_output_sizes
from vidseg.models.backbones.vit import DinoV2Backbone, DinoVisionTransformer, resample_grid
from vidseg.models.backbones.vit_adapter import (
    AdapterSpec,
    ViTAdapter,
    official_backbone_state,
    patch16_state,
)


def tiny_vit(patch: int = 14, img_size: int = 56, offset: float = 0.1) -> DinoVisionTransformer:
    torch.manual_seed(0)
    vit = DinoVisionTransformer(32, 4, 2, patch_size=patch, img_size=img_size, init_values=0.5,
                                interpolate_offset=offset)
    return vit.eval()


def tiny_adapter(freeze_vit: bool = False) -> ViTAdapter:
    spec = AdapterSpec(2, ((0, 0), (1, 1), (2, 2), (3, 3)), conv_inplane=8)
    return ViTAdapter(tiny_vit(patch=16, img_size=64), spec, freeze_vit=freeze_vit).eval()


def test_pos_embed_kept_at_pretraining_size():
    vit = tiny_vit()
    assert vit.interpolate_pos_encoding(56, 56) is vit.pos_embed


@pytest.mark.parametrize("offset", [0.1, 0.0])
@pytest.mark.parametrize(("height", "width"), [(28, 70), (98, 42), (84, 84)])
def test_pos_embed_interpolated_to_any_grid(offset, height, width):
    vit = tiny_vit(offset=offset)
    pos = vit.interpolate_pos_encoding(height, width)
    gh, gw = height // 14, width // 14
    assert pos.shape == (1, 1 + gh * gw, 32)
    assert torch.equal(pos[:, 0], vit.pos_embed[:, 0])  # the class-token entry is not resized
    # A constant table stays constant under bicubic resizing (the weights sum to one).
    with torch.no_grad():
        vit.pos_embed[:, 1:] = 0.25
    assert torch.allclose(vit.interpolate_pos_encoding(height, width)[:, 1:], torch.full((1, gh * gw, 32), 0.25))


def test_interpolate_offset_changes_sample_positions():
    a = tiny_vit(offset=0.1).interpolate_pos_encoding(28, 42)
    b = tiny_vit(offset=0.0).interpolate_pos_encoding(28, 42)
    assert a.shape == b.shape and not torch.allclose(a, b)


@pytest.mark.parametrize(("height", "width"), [(30, 45), (56, 56), (17, 100)])
def test_dinov2_backbone_any_size_is_padding_then_crop(height, width):
    model = DinoV2Backbone(tiny_vit())
    x = torch.randn(2, 3, height, width)
    with torch.no_grad():
        out = model(x)
        padded = model(torch.nn.functional.pad(x, (0, -width % 14, 0, -height % 14)))
    check_output_sizes(out, height, width)
    for name, f in out.items():
        assert f.shape[1] == 32
        assert torch.allclose(f, padded[name][..., : f.shape[-2], : f.shape[-1]], atol=1e-6)


def test_resample_grid_matches_interpolate_for_integer_ratio():
    x = torch.randn(1, 4, 5, 7)
    want = torch.nn.functional.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
    assert torch.allclose(resample_grid(x, 16, 4, (20, 28)), want, atol=1e-6)
    want = torch.nn.functional.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
    assert torch.allclose(resample_grid(x, 16, 32, (2, 3)), want, atol=1e-6)


def test_dinov2_backbone_taps_last_block_of_each_quarter():
    model = DinoV2Backbone(tiny_vit())
    assert model.taps == [0, 1, 2, 3]
    with torch.no_grad():
        x = torch.randn(1, 3, 56, 56)
        tokens = model.vit(x)  # normed tokens after the last block
        res4 = model(x)["res4"]  # stride 16 from a stride-14 grid: resampled, so compare the layout only
    assert tokens.shape == (1, 1 + 16, 32) and res4.shape == (1, 32, 4, 4)


def test_dinov2_backbone_frozen_vit_gets_no_gradient():
    model = DinoV2Backbone(tiny_vit(), freeze_vit=True)
    model.train()
    out = model(torch.randn(1, 3, 28, 28))
    assert not out["res2"].requires_grad
    assert all(not p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(("height", "width"), [(30, 45), (17, 100)])
def test_dinov2_spatial_prior_starts_as_the_plain_backbone_then_trains(height, width):
    plain = DinoV2Backbone(tiny_vit(), freeze_vit=True)
    model = DinoV2Backbone(tiny_vit(), freeze_vit=True, spatial_prior=8).train()
    x = torch.randn(2, 3, height, width)
    out, ref = model(x), plain(x)
    check_output_sizes(out, height, width)
    assert all(torch.equal(out[name], ref[name]) for name in ref)
    sum(f.square().sum() for f in out.values()).backward()
    assert model.spm is not None and model.spm.fc1.weight.grad.abs().sum() > 0
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
    assert not torch.equal(model(x)["res2"], ref["res2"])
    assert all(p.grad is None for p in model.vit.parameters())


def test_spatial_prior_only_for_dinov2_backbones():
    with pytest.raises(ConfigError, match="spatial_prior"):
        build_backbone(BackboneConfig(name="tiny_cnn", spatial_prior=8))


@pytest.mark.parametrize(("height", "width"), [(64, 96), (40, 70), (33, 129)])
def test_adapter_output_strides(height, width):
    model = tiny_adapter()
    x = torch.randn(2, 3, height, width)
    with torch.no_grad():
        out = model(x)
        padded = model(torch.nn.functional.pad(x, (0, -width % 32, 0, -height % 32)))
    check_output_sizes(out, height, width)
    for name, f in out.items():
        assert f.shape[1] == 32
        assert torch.allclose(f, padded[name][..., : f.shape[-2], : f.shape[-1]], atol=1e-5)


def test_adapter_frozen_vit_gets_no_gradient_adapter_does():
    model = tiny_adapter(freeze_vit=True).train()
    out = model(torch.randn(2, 3, 64, 64))
    sum(f.square().mean() for f in out.values()).backward()
    assert all(p.grad is None for p in model.vit_module.parameters())
    assert model.spm.fc1.weight.grad is not None
    assert model.interactions[0].extractor.attn.value_proj.weight.grad is not None
    assert model.level_embed.grad is not None


def test_adapter_unfrozen_vit_trains():
    model = tiny_adapter(freeze_vit=False).train()
    out = model(torch.randn(2, 3, 64, 64))
    sum(f.square().mean() for f in out.values()).backward()
    assert model.vit_module.blocks[0].attn.qkv.weight.grad is not None


def test_adapter_last_interaction_has_extra_extractors():
    model = tiny_adapter()
    assert [m.extra_extractors is not None for m in model.interactions] == [False, False, False, True]


def test_official_backbone_state_adds_counters_and_rejects_foreign_keys():
    model = tiny_adapter()
    official = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    state = official_backbone_state(official)
    model.load_state_dict(state, strict=True)
    assert state["norm1.num_batches_tracked"].dtype == torch.long
    with pytest.raises(KeyError, match="sem_seg_head"):
        official_backbone_state({"sem_seg_head.x": torch.zeros(1)})


def test_patch16_state_resizes_only_the_patch_kernel():
    vit14 = tiny_vit(img_size=56 * 14 // 14)
    state = patch16_state(vit14.state_dict())
    assert state["patch_embed.proj.weight"].shape == (32, 3, 16, 16)
    assert torch.equal(state["pos_embed"], vit14.pos_embed)
    corner = vit14.patch_embed.proj.weight[..., 0, 0]  # align_corners=True keeps the corners
    assert torch.allclose(state["patch_embed.proj.weight"][..., 0, 0], corner)


@pytest.mark.parametrize("name", ["dinov2_vits14", "vit_adapter_s"])
def test_build_backbone_vit_names(name):
    model = build_backbone(BackboneConfig(name=name, freeze_vit=True))
    assert set(model.out_channels.values()) == {384}
    vit = model.vit if isinstance(model, DinoV2Backbone) else model.vit_module
    assert vit.patch_embed.proj.kernel_size == ((14, 14) if name.startswith("dinov2") else (16, 16))
    assert all(not p.requires_grad for p in vit.parameters())


def test_build_backbone_large_vit_pretrained_needs_weights():
    with pytest.raises(ConfigError, match="DINOv2"):
        build_backbone(BackboneConfig(name="dinov2_vitb14", pretrained=True))


def test_dinov2_freeze_at_stem_freezes_patch_embedding():
    model = DinoV2Backbone(tiny_vit())
    model.freeze_stages(2)
    assert not model.vit.patch_embed.proj.weight.requires_grad
    assert not model.vit.blocks[0].attn.qkv.weight.requires_grad
    assert model.vit.blocks[1].attn.qkv.weight.requires_grad
