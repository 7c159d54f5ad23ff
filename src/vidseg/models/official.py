"""Official Mask2Former (detectron2 model zoo), MinVIS and DVIS++ checkpoints: safe reading, key map, config.

* `read_official_file(path)`: the state dict of a detectron2 `.pkl` (a pickle of numpy arrays, read with an
  unpickler that admits only numpy arrays and plain containers: a pickle that carries code is refused, never
  run) or of an fvcore `.pth` (`torch.load(weights_only=True)`); both keep their tensors under `"model"`.
* `official_to_vidseg(state)`: renames the official keys onto vidseg's module names (fixture README § 6.2):
  detectron2 ResNet -> torchvision names, `nn.MultiheadAttention.in_proj_*` split into q/k/v, the FPN listed
  coarse to fine, `tracker.` / `refiner.` onto the DVIS++ video modules. The legacy pixel-decoder names of
  Mask2Former `.pkl` files (`sem_seg_head.X`, renamed by `MaskFormerHead._load_from_state_dict`) are accepted.
* `model_config_from_official(state)`: the vidseg `ModelConfig` the tensors describe (K, queries, widths,
  layer counts, re-id head, backbone, online/offline).

Every problem is a one-line `CheckpointError` naming the file and the first offending key.
"""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vidseg.config import (
    BackboneConfig,
    BackboneName,
    DecoderConfig,
    ModelConfig,
    ModelMethod,
    PixelDecoderConfig,
    RefinerConfig,
    TrackerConfig,
)
from vidseg.errors import CheckpointError
from vidseg.models.convert import renumber_fpn_levels

__all__ = ["model_config_from_official", "official_to_vidseg", "read_official_file"]

# --- reading ----------------------------------------------------------------------------------------------

# What a detectron2 `.pkl` may contain: numpy arrays (and their scalar/dtype pieces) in plain containers.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name} (only numpy arrays may be stored)")


def read_official_file(path: str | Path) -> dict[str, Tensor]:
    """The model tensors of an official checkpoint file (`.pkl` detectron2 zoo or `.pth` fvcore).

    Raises:
        CheckpointError: unreadable, truncated, code-carrying, or without model tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
    if zipfile.is_zipfile(io.BytesIO(raw)):  # torch.save's format
        try:
            obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises many types; all mean "not a safe checkpoint"
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"{path}: refused or unreadable torch checkpoint ({reason[:200]})") from None
    else:
        try:
            obj = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
        except pickle.UnpicklingError as e:
            raise CheckpointError(f"{path}: refused pickle: {e}") from None
        except (EOFError, ValueError, TypeError, AttributeError, IndexError, MemoryError) as e:
            raise CheckpointError(f"{path}: truncated or corrupt pickle ({type(e).__name__})") from None
    model = obj.get("model", obj) if isinstance(obj, Mapping) else None
    if not isinstance(model, Mapping) or not model:
        raise CheckpointError(f"{path}: no model tensors (expected a dict with a 'model' state dict)")
    state: dict[str, Tensor] = {}
    for key, value in model.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        if not isinstance(value, Tensor) or not isinstance(key, str):
            raise CheckpointError(f"{path}: model.{key}: not a tensor ({type(value).__name__})")
        state[key] = value
    return state


# --- key map ----------------------------------------------------------------------------------------------

# detectron2 ResNet -> torchvision names, after `resS` has become `layer(S-1)` (see `_backbone_to_vidseg`).
_RESNET = [
    (r"backbone\.stem\.conv1\.weight", "backbone.conv1.weight"),
    (r"backbone\.stem\.conv1\.norm\.(\w+)", r"backbone.bn1.\1"),
    (r"backbone\.(layer\d\.\d+)\.conv(\d)\.weight", r"backbone.\1.conv\2.weight"),
    (r"backbone\.(layer\d\.\d+)\.conv(\d)\.norm\.(\w+)", r"backbone.\1.bn\2.\3"),
    (r"backbone\.(layer\d)\.0\.shortcut\.weight", r"backbone.\1.0.downsample.0.weight"),
    (r"backbone\.(layer\d)\.0\.shortcut\.norm\.(\w+)", r"backbone.\1.0.downsample.1.\2"),
]
_PIXEL = [
    (r"input_proj\.(.+)", r"input_proj.\1"),
    (r"transformer\.level_embed", "level_embed"),
    (r"transformer\.encoder\.layers\.(.+)", r"layers.\1"),
    (r"mask_features\.(weight|bias)", r"mask_proj.\1"),
    # FPN levels keep their official number as `@k` until `renumber_fpn_levels` knows how many there are.
    (r"adapter_(\d+)\.weight", r"lateral_convs.@\1.0.weight"),
    (r"adapter_(\d+)\.norm\.(\w+)", r"lateral_convs.@\1.1.\2"),
    (r"layer_(\d+)\.weight", r"output_convs.@\1.0.weight"),
    (r"layer_(\d+)\.norm\.(\w+)", r"output_convs.@\1.1.\2"),
]
_DECODER = [
    (r"(query_feat|query_embed|level_embed|decoder_norm)\.(\w+)", r"decoder.\1.\2"),
    (r"input_proj\.(.+)", r"decoder.input_proj.\1"),
    (r"class_embed\.(\w+)", r"decoder.class_head.\1"),
    (r"mask_embed\.layers\.(.+)", r"decoder.mask_head.layers.\1"),
    (r"reid_embed\.layers\.(.+)", r"reid_head.layers.\1"),
    (r"transformer_cross_attention_layers\.(\d+)\.multihead_attn\.(.+)", r"decoder.layers.\1.cross_attn.\2"),
    (r"transformer_cross_attention_layers\.(\d+)\.norm\.(\w+)", r"decoder.layers.\1.cross_norm.\2"),
    (r"transformer_self_attention_layers\.(\d+)\.self_attn\.(.+)", r"decoder.layers.\1.self_attn.\2"),
    (r"transformer_self_attention_layers\.(\d+)\.norm\.(\w+)", r"decoder.layers.\1.self_norm.\2"),
    (r"transformer_ffn_layers\.(\d+)\.(linear[12])\.(\w+)", r"decoder.layers.\1.\2.\3"),
    (r"transformer_ffn_layers\.(\d+)\.norm\.(\w+)", r"decoder.layers.\1.ffn_norm.\2"),
]
_VIDEO_BLOCKS = [
    (r"transformer_cross_attention_layers\.(\d+)\.multihead_attn\.(.+)", r"cross_attn.\1.attn.\2"),
    (r"transformer_cross_attention_layers\.(\d+)\.norm\.(\w+)", r"cross_attn.\1.norm.\2"),
    (r"transformer_self_attention_layers\.(\d+)\.self_attn\.(.+)", r"self_attn.\1.attn.\2"),
    (r"transformer_self_attention_layers\.(\d+)\.norm\.(\w+)", r"self_attn.\1.norm.\2"),
    (r"transformer_time_self_attention_layers\.(\d+)\.self_attn\.(.+)", r"temporal_attn.\1.attn.\2"),
    (r"transformer_time_self_attention_layers\.(\d+)\.norm\.(\w+)", r"temporal_attn.\1.norm.\2"),
    (r"transformer_obj_self_attention_layers\.(\d+)\.self_attn\.(.+)", r"object_attn.\1.attn.\2"),
    (r"transformer_obj_self_attention_layers\.(\d+)\.norm\.(\w+)", r"object_attn.\1.norm.\2"),
    (r"transformer_ffn_layers\.(\d+)\.(.+)", r"ffn.\1.\2"),
    (r"conv_short_aggregate_layers\.(\d+)\.0\.(\w+)", r"temporal_conv.\1.conv1.\2"),
    (r"conv_short_aggregate_layers\.(\d+)\.2\.(\w+)", r"temporal_conv.\1.conv2.\2"),
    (r"conv_norms\.(\d+)\.(\w+)", r"temporal_conv.\1.norm.\2"),
    (r"(decoder_norm|class_embed|mask_feature_proj|activation_proj)\.(\w+)", r"\1.\2"),
    (r"(mask_embed|ref_proj)\.layers\.(\d+)\.(\w+)", r"\1.layers.\2.\3"),
]
_SEGMENTER_PIXEL = "sem_seg_head.pixel_decoder."
_SEGMENTER_DECODER = "sem_seg_head.predictor."
_UNUSED = ("criterion.",)


def _rename(key: str, rules: list[tuple[str, Any]]) -> str | None:
    for pattern, repl in rules:
        m = re.fullmatch(pattern, key)
        if m:
            return repl(m) if callable(repl) else m.expand(repl)
    return None


def _put(out: dict[str, Tensor], key: str, value: Tensor) -> None:
    """Store `value` under `key`, splitting a fused attention input projection into q, k, v."""
    m = re.fullmatch(r"(.+)\.in_proj_(weight|bias)", key)
    if m is None:
        out[key] = value
        return
    for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
        out[f"{m[1]}.{name}.{m[2]}"] = part.clone()  # clone: safetensors refuses shared storage


def is_dvis_offline(state: Mapping[str, Tensor]) -> bool:
    return any(k.startswith("refiner.") for k in state)


def is_dvis(state: Mapping[str, Tensor]) -> bool:
    return any(k.startswith("tracker.") for k in state)


def official_to_vidseg(state: Mapping[str, Tensor], source: str = "<checkpoint>") -> dict[str, Tensor]:
    """Rename an official state dict onto vidseg names.

    Segmenter-only checkpoints (Mask2Former, MinVIS) map onto a bare `Segmenter` (`backbone.*`,
    `pixel_decoder.*`, `decoder.*`, `reid_head.*`); DVIS++ checkpoints onto a whole `VideoSegmentationModel`
    (`segmenter.*`, `video.tracker.*` online, `video.online.tracker.*` + `video.refiner.*` offline).

    Raises:
        CheckpointError: a key that is not part of a known official model, naming it.
    """
    video = is_dvis(state)
    seg_prefix = "segmenter." if video else ""
    tracker_prefix = "video.online.tracker." if is_dvis_offline(state) else "video.tracker."
    out: dict[str, Tensor] = {}
    backbone: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith(_UNUSED) or key in ("pixel_mean", "pixel_std"):
            continue
        new: str | None = None
        if key.startswith("backbone."):
            backbone[key] = value
            continue
        if key.startswith(_SEGMENTER_DECODER):
            new = _rename(key[len(_SEGMENTER_DECODER):], _DECODER)
        elif key.startswith("sem_seg_head."):
            rest = key[len("sem_seg_head."):]
            rest = rest[len("pixel_decoder."):] if rest.startswith("pixel_decoder.") else rest  # legacy names
            new = _rename(rest, _PIXEL)
            new = None if new is None else "pixel_decoder." + new
        elif key.startswith("tracker."):
            new = _rename(key[len("tracker."):], _VIDEO_BLOCKS)
            new = None if new is None else tracker_prefix + new
        elif key.startswith("refiner."):
            new = _rename(key[len("refiner."):], _VIDEO_BLOCKS)
            new = None if new is None else "video.refiner." + new
        if new is None:
            raise CheckpointError(f"{source}: {key}: not a key of a Mask2Former / MinVIS / DVIS++ model")
        if not new.startswith("video."):
            new = seg_prefix + new
        _put(out, new, value)
    for key, value in _backbone_to_vidseg(backbone, source).items():
        out[seg_prefix + key] = value
    return renumber_fpn_levels(out)


def _backbone_to_vidseg(backbone: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    if not backbone:
        raise CheckpointError(f"{source}: no backbone.* tensors")
    if "backbone.stem.conv1.weight" in backbone:
        out = {}
        for key, value in backbone.items():
            if key.endswith("num_batches_tracked"):
                continue
            new = _rename(re.sub(r"^backbone\.res(\d)", lambda m: f"backbone.layer{int(m[1]) - 1}", key), _RESNET)
            if new is None:
                raise CheckpointError(f"{source}: {key}: not a detectron2 ResNet key")
            out[new] = value
        return out
    if any(k.startswith("backbone.vit_module.") for k in backbone):
        from vidseg.models.backbones.vit_adapter import official_backbone_state

        try:
            inner = official_backbone_state({k[len("backbone."):]: v for k, v in backbone.items()})
        except KeyError as e:
            raise CheckpointError(f"{source}: {e.args[0]}") from None
        return {"backbone." + k: v for k, v in inner.items()}
    if "backbone.patch_embed.proj.weight" in backbone:  # D2SwinTransformer keeps Microsoft's names
        return {k: v for k, v in backbone.items() if not k.endswith("attn_mask")}
    raise CheckpointError(f"{source}: {next(iter(backbone))}: unknown backbone (ResNet, Swin or ViT-Adapter)")


# --- config -----------------------------------------------------------------------------------------------


def _count(state: Mapping[str, Tensor], pattern: str) -> int:
    return len({m[1] for k in state if (m := re.match(pattern, k))})


def _shape(state: Mapping[str, Tensor], key: str, source: str) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"{source}: {key}: missing (not a Mask2Former / DVIS++ checkpoint?)")
    return tuple(state[key].shape)


def _backbone_config(state: Mapping[str, Tensor], source: str) -> BackboneConfig:
    if "backbone.stem.conv1.weight" in state:
        blocks = _count(state, r"backbone\.res4\.(\d+)\.")
        resnets: dict[int, BackboneName] = {6: "resnet50", 23: "resnet101"}
        if blocks not in resnets:
            raise CheckpointError(f"{source}: backbone.res4: {blocks} blocks, expected 6 (R50) or 23 (R101)")
        return BackboneConfig(name=resnets[blocks], frozen_bn=True)
    if any(k.startswith("backbone.vit_module.") for k in state):
        from vidseg.models.backbones.vit_adapter import official_backbone_config

        return official_backbone_config({k[len("backbone."):]: v for k, v in state.items()
                                         if k.startswith("backbone.")})
    if "backbone.patch_embed.proj.weight" in state:
        embed = _shape(state, "backbone.patch_embed.proj.weight", source)[0]
        depth3 = _count(state, r"backbone\.layers\.2\.blocks\.(\d+)\.")
        window = int(round((_shape(state, "backbone.layers.0.blocks.0.attn.relative_position_bias_table",
                                   source)[0]) ** 0.5 + 1) // 2)
        swins: dict[tuple[int, int], BackboneName] = {
            (96, 6): "swin_t", (96, 18): "swin_s", (128, 18): "swin_b", (192, 18): "swin_l"
        }
        if (embed, depth3) not in swins:
            raise CheckpointError(f"{source}: backbone.patch_embed: Swin with embed {embed}, stage-3 depth "
                                  f"{depth3} is not a vidseg backbone")
        return BackboneConfig(name=swins[(embed, depth3)], window_size=window)
    raise CheckpointError(f"{source}: no backbone.* tensors of a known backbone")


def model_config_from_official(state: Mapping[str, Tensor], source: str = "<checkpoint>") -> ModelConfig:
    """The vidseg `ModelConfig` of an official state dict (official key names).

    Head counts are not stored in the tensors: every official config uses 8 heads in the pixel decoder,
    the decoder, the tracker and the refiner, and so does this.
    """
    p, d = _SEGMENTER_PIXEL, _SEGMENTER_DECODER
    if not any(k.startswith(p) for k in state):  # legacy names (see the module docstring)
        state = {("sem_seg_head.pixel_decoder." + k[len("sem_seg_head."):]
                  if k.startswith("sem_seg_head.") and not k.startswith(d) else k): v for k, v in state.items()}
    num_class_logits, hidden = _shape(state, d + "class_embed.weight", source)
    num_queries = _shape(state, d + "query_feat.weight", source)[0]
    pixel_hidden = _shape(state, p + "input_proj.0.0.weight", source)[0]
    levels = _count(state, re.escape(p) + r"input_proj\.(\d+)\.")
    offsets = _shape(state, p + "transformer.encoder.layers.0.self_attn.sampling_offsets.weight", source)[0]
    heads = 8
    reid = any(k.startswith(d + "reid_embed.") for k in state)
    method: ModelMethod = "dvis_offline" if is_dvis_offline(state) else "dvis_online" if is_dvis(state) else "segmenter"
    config = ModelConfig(
        backbone=_backbone_config(state, source),
        pixel_decoder=PixelDecoderConfig(
            hidden_dim=pixel_hidden,
            mask_dim=_shape(state, p + "mask_features.weight", source)[0],
            num_layers=_count(state, re.escape(p) + r"transformer\.encoder\.layers\.(\d+)\."),
            num_heads=heads,
            num_points=offsets // (heads * levels * 2),
            ffn_dim=_shape(state, p + "transformer.encoder.layers.0.linear1.weight", source)[0],
        ),
        decoder=DecoderConfig(
            hidden_dim=hidden,
            num_queries=num_queries,
            num_layers=_count(state, re.escape(d) + r"transformer_self_attention_layers\.(\d+)\."),
            num_heads=heads,
            ffn_dim=_shape(state, d + "transformer_ffn_layers.0.linear1.weight", source)[0],
        ),
        num_classes=num_class_logits - 1,
        classification="softmax",
        reid_head=reid,
        method=method,
    )
    if method == "segmenter":
        return config
    tracker = TrackerConfig(
        num_layers=_count(state, r"tracker\.transformer_self_attention_layers\.(\d+)\."),
        num_heads=heads,
        ffn_dim=_shape(state, "tracker.transformer_ffn_layers.0.linear1.weight", source)[0],
    )
    refiner = RefinerConfig()
    if method == "dvis_offline":
        refiner = RefinerConfig(
            num_layers=_count(state, r"refiner\.transformer_ffn_layers\.(\d+)\."),
            num_heads=heads,
            ffn_dim=_shape(state, "refiner.transformer_ffn_layers.0.linear1.weight", source)[0],
        )
    return replace(config, tracker=tracker, refiner=refiner)
