"""Import `transformers` Mask2Former checkpoints (`Mask2FormerForUniversalSegmentation`) into vidseg.

* `model_config_from_hf(hf_config)` maps the HF `config.json` dict to a vidseg `ModelConfig`.
* `convert_hf_state_dict(hf_state, ...)` renames (and, for the fused cross-attention projection, splits)
  the tensors into a vidseg `Segmenter` state dict. The Swin backbone part is delegated to
  `vidseg.models.backbones.swin.swin_from_hf_state_dict`.
* `read_hf_checkpoint(src_dir)` does both for a saved HF directory (`vidseg convert-weights --from hf`
  writes the result as a vidseg checkpoint directory, see `vidseg.published`).

Every mismatch is a `CheckpointError` saying what was expected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from vidseg.config import (
    BackboneConfig,
    DecoderConfig,
    ModelConfig,
    PixelDecoderConfig,
    from_dict,
)
from vidseg.errors import CheckpointError, ConfigError

__all__ = [
    "convert_hf_state_dict",
    "model_config_from_hf",
    "read_hf_checkpoint",
    "swin_name_from_hf",
]

_HF_PIXEL = "model.pixel_level_module.decoder."
_HF_BACKBONE = "model.pixel_level_module.encoder."
_HF_TRANSFORMER = "model.transformer_module."

# (embed_dim, depths, num_heads) -> vidseg backbone name.
_SWIN_NAMES = {
    (96, (2, 2, 6, 2), (3, 6, 12, 24)): "swin_t",
    (96, (2, 2, 18, 2), (3, 6, 12, 24)): "swin_s",
    (128, (2, 2, 18, 2), (4, 8, 16, 32)): "swin_b",
    (192, (2, 2, 18, 2), (6, 12, 24, 48)): "swin_l",
}


# --- config -----------------------------------------------------------------------------------------------


def swin_name_from_hf(backbone_config: Mapping[str, Any]) -> str:
    """vidseg name (`swin_t` ... `swin_l`) of an HF Swin backbone config; CheckpointError if none fits."""
    if backbone_config.get("model_type") != "swin":
        raise CheckpointError(
            f"backbone_config.model_type: expected 'swin', got {backbone_config.get('model_type')!r}"
        )
    key = (
        int(backbone_config.get("embed_dim", 96)),
        tuple(backbone_config.get("depths", (2, 2, 6, 2))),
        tuple(backbone_config.get("num_heads", (3, 6, 12, 24))),
    )
    if key not in _SWIN_NAMES:
        known = ", ".join(
            f"{n} (embed_dim={e}, depths={list(d)}, num_heads={list(h)})" for (e, d, h), n in _SWIN_NAMES.items()
        )
        raise CheckpointError(
            f"backbone_config: Swin with embed_dim={key[0]}, depths={list(key[1])}, num_heads={list(key[2])} "
            f"is not a vidseg backbone (known: {known})"
        )
    return _SWIN_NAMES[key]


def model_config_from_hf(hf_config: Mapping[str, Any], *, backbone_name: str | None = None) -> ModelConfig:
    """vidseg `ModelConfig` equivalent to an HF `Mask2FormerConfig` dict (`config.json`).

    Args:
        hf_config: the parsed `config.json`.
        backbone_name: vidseg backbone name; default: derived from `backbone_config` (Swin T/S/B/L).
    """
    def get(key: str, default: Any) -> Any:
        return hf_config.get(key, default)

    if get("model_type", "mask2former") != "mask2former":
        raise CheckpointError(f"config.json: model_type: expected 'mask2former', got {get('model_type', None)!r}")
    checks = {
        "activation_function": (get("activation_function", "relu"), "relu"),
        "common_stride": (get("common_stride", 4), 4),
        "feature_strides": (list(get("feature_strides", [4, 8, 16, 32])), [4, 8, 16, 32]),
    }
    for key, (got, want) in checks.items():
        if got != want:
            raise CheckpointError(f"config.json: {key}: vidseg supports {want!r}, got {got!r}")
    feature_size = int(get("feature_size", 256))
    hidden_dim = int(get("hidden_dim", 256))
    if get("enforce_input_projection", False) and feature_size == hidden_dim:
        raise CheckpointError(
            "config.json: enforce_input_projection: vidseg projects decoder inputs only when feature_size "
            "!= hidden_dim"
        )
    backbone_hf = get("backbone_config", None) or {"model_type": "swin"}
    backbone_fields: dict[str, Any] = {"name": backbone_name, "frozen_bn": True}
    if backbone_name is None:
        backbone_fields["name"] = swin_name_from_hf(backbone_hf)
        backbone_fields["window_size"] = int(backbone_hf.get("window_size", 7))
        backbone_fields["drop_path_rate"] = float(backbone_hf.get("drop_path_rate", 0.1))
    num_classes = _num_labels(hf_config)
    heads = int(get("num_attention_heads", 8))
    dropout = float(get("dropout", 0.0))
    try:
        return ModelConfig(
            backbone=from_dict(BackboneConfig, backbone_fields),
            pixel_decoder=PixelDecoderConfig(
                hidden_dim=feature_size,
                mask_dim=int(get("mask_feature_size", 256)),
                num_layers=int(get("encoder_layers", 6)),
                num_heads=heads,
                num_points=4,  # fixed in the HF implementation
                ffn_dim=int(get("encoder_feedforward_dim", 1024)),
                dropout=dropout,
            ),
            decoder=DecoderConfig(
                hidden_dim=hidden_dim,
                num_queries=int(get("num_queries", 100)),
                # HF counts the prediction on the initial queries as a layer.
                num_layers=int(get("decoder_layers", 10)) - 1,
                num_heads=heads,
                ffn_dim=int(get("dim_feedforward", 2048)),
                dropout=dropout,
                pre_norm=bool(get("pre_norm", False)),
            ),
            num_classes=num_classes,
            classification="softmax",
        )
    except ConfigError as e:
        raise CheckpointError(f"config.json: {e}") from None


def _num_labels(hf_config: Mapping[str, Any]) -> int:
    id2label = hf_config.get("id2label")
    if isinstance(id2label, Mapping) and id2label:
        return len(id2label)
    if "num_labels" in hf_config:
        return int(hf_config["num_labels"])
    raise CheckpointError("config.json: cannot tell the number of classes (no id2label / num_labels)")


# --- weights ----------------------------------------------------------------------------------------------

_PIXEL_LAYER = {
    "self_attn_layer_norm": "norm1",
    "fc1": "linear1",
    "fc2": "linear2",
    "final_layer_norm": "norm2",
}
_DECODER_LAYER = {
    "self_attn_layer_norm": "self_norm",
    "cross_attn_layer_norm": "cross_norm",
    "fc1": "linear1",
    "fc2": "linear2",
    "final_layer_norm": "ffn_norm",
}


def convert_hf_state_dict(
    hf_state: Mapping[str, Tensor],
    *,
    backbone_converter: Callable[[Mapping[str, Tensor]], dict[str, Tensor]] | None = None,
    include_backbone: bool = True,
) -> dict[str, Tensor]:
    """Rename an HF `Mask2FormerForUniversalSegmentation` state dict to a vidseg `Segmenter` one.

    Args:
        hf_state: the HF tensors (keys `model.pixel_level_module...`, `model.transformer_module...`,
            `class_predictor...`).
        backbone_converter: maps the backbone tensors (with the `model.pixel_level_module.encoder.` prefix
            removed) to vidseg backbone keys; default `swin_from_hf_state_dict`.
        include_backbone: False converts only the pixel decoder, decoder and heads.

    Returns:
        vidseg keys (`backbone.*`, `pixel_decoder.*`, `decoder.*`) -> tensors (shared with `hf_state`
        except the split cross-attention projections).
    """
    out: dict[str, Tensor] = {}
    backbone: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in hf_state.items():
        if key.startswith(_HF_BACKBONE):
            backbone[key[len(_HF_BACKBONE) :]] = value
        elif key.startswith(_HF_PIXEL):
            if not _convert_pixel(key[len(_HF_PIXEL) :], value, out):
                unknown.append(key)
        elif key.startswith(_HF_TRANSFORMER):
            if not _convert_transformer(key[len(_HF_TRANSFORMER) :], value, out):
                unknown.append(key)
        elif key.startswith("class_predictor."):
            out["decoder.class_head." + key[len("class_predictor.") :]] = value
        elif key.startswith("criterion."):
            continue  # loss buffers (no-object weight), not model weights
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"not a Mask2Former state dict: unexpected keys {unknown[:5]}" + _more(unknown))
    if not any(k.startswith("pixel_decoder.") for k in out) or "decoder.class_head.weight" not in out:
        raise CheckpointError("not a Mask2Former state dict: no pixel decoder or class predictor weights")
    if include_backbone:
        if not backbone:
            raise CheckpointError("state dict has no backbone weights (model.pixel_level_module.encoder.*)")
        if backbone_converter is None:
            from vidseg.models.backbones.swin import swin_from_hf_state_dict

            backbone_converter = swin_from_hf_state_dict
        for key, value in backbone_converter(backbone).items():
            out["backbone." + key] = value
    return renumber_fpn_levels(out)


def _convert_pixel(key: str, value: Tensor, out: dict[str, Tensor]) -> bool:
    p = "pixel_decoder."
    if key in ("level_embed", "mask_projection.weight", "mask_projection.bias"):
        out[p + key.replace("mask_projection", "mask_proj")] = value
        return True
    if m := re.fullmatch(r"input_projections\.(\d+)\.(.+)", key):
        out[f"{p}input_proj.{m[1]}.{m[2]}"] = value
        return True
    if m := re.fullmatch(r"encoder\.layers\.(\d+)\.([a-z_0-9]+)\.(.+)", key):
        layer, module, rest = m[1], m[2], m[3]
        name = "self_attn" if module == "self_attn" else _PIXEL_LAYER.get(module)
        if name is None:
            return False
        out[f"{p}layers.{layer}.{name}.{rest}"] = value
        return True
    # FPN: HF numbers adapters from the finest map (adapter_1 = res2); vidseg lists them coarse to fine.
    if m := re.fullmatch(r"(adapter|layer)_(\d+)\.(.+)", key):
        out[f"{p}{'lateral' if m[1] == 'adapter' else 'output'}_convs.@{m[2]}.{m[3]}"] = value
        return True
    return False


def _convert_transformer(key: str, value: Tensor, out: dict[str, Tensor]) -> bool:
    d = "decoder."
    simple = {
        "queries_embedder.weight": "query_embed.weight",
        "queries_features.weight": "query_feat.weight",
        "level_embed.weight": "level_embed.weight",
        "decoder.layernorm.weight": "decoder_norm.weight",
        "decoder.layernorm.bias": "decoder_norm.bias",
    }
    if key in simple:
        out[d + simple[key]] = value
        return True
    if m := re.fullmatch(r"input_projections\.(\d+)\.(weight|bias)", key):
        out[f"{d}input_proj.{m[1]}.{m[2]}"] = value
        return True
    if m := re.fullmatch(r"decoder\.mask_predictor\.mask_embedder\.(\d+)\.0\.(weight|bias)", key):
        out[f"{d}mask_head.layers.{m[1]}.{m[2]}"] = value
        return True
    if m := re.fullmatch(r"decoder\.layers\.(\d+)\.(.+)", key):
        prefix, rest = f"{d}layers.{m[1]}.", m[2]
        if m2 := re.fullmatch(r"cross_attn\.in_proj_(weight|bias)", rest):
            # nn.MultiheadAttention packs q, k, v projections into one tensor.
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                # clone: safetensors refuses tensors that share storage.
                out[f"{prefix}cross_attn.{name}.{m2[1]}"] = part.clone()
            return True
        module, _, param = rest.rpartition(".")
        if module in ("cross_attn.out_proj", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                      "self_attn.out_proj"):
            out[prefix + rest] = value
            return True
        if module in _DECODER_LAYER:
            out[f"{prefix}{_DECODER_LAYER[module]}.{param}"] = value
            return True
    return False


def renumber_fpn_levels(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Replace FPN level numbers written as `_convs.@k.` (HF and official: 1 = finest, next to the deformable
    encoder's levels) by vidseg indices (0 = coarsest), once the number of levels is known."""
    numbers = {int(m[1]) for k in state if (m := re.search(r"_convs\.@(\d+)\.", k))}
    if not numbers:
        return state
    count = max(numbers)
    return {re.sub(r"_convs\.@(\d+)\.", lambda m: f"_convs.{count - int(m[1])}.", k): v for k, v in state.items()}


def _more(items: list[str]) -> str:
    return f" and {len(items) - 5} more" if len(items) > 5 else ""


# --- files ------------------------------------------------------------------------------------------------


def _read_hf_dir(src: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    if not src.is_dir():
        raise CheckpointError(f"{src}: not a directory (expected a saved transformers checkpoint)")
    config_path = src / "config.json"
    try:
        hf_config = json.loads(config_path.read_text())
    except OSError:
        raise CheckpointError(f"{config_path}: missing (expected a saved transformers checkpoint)") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{config_path}: invalid JSON ({e})") from None
    shards = sorted(src.glob("model*.safetensors"))
    state: dict[str, Tensor] = {}
    try:
        if shards:
            from safetensors.torch import load_file

            for shard in shards:
                state.update(load_file(str(shard)))
        elif (src / "pytorch_model.bin").exists():
            import torch

            state = torch.load(src / "pytorch_model.bin", map_location="cpu", weights_only=True)
        else:
            raise CheckpointError(f"{src}: no model.safetensors or pytorch_model.bin")
    except (OSError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{src}: cannot read weights ({e})") from None
    return hf_config, state


def read_hf_checkpoint(src: str | Path) -> tuple[ModelConfig, dict[str, Tensor]]:
    """(vidseg model config, vidseg `Segmenter` state dict) of a saved HF Mask2Former directory
    (`config.json` + `model.safetensors` / shards / `pytorch_model.bin`)."""
    hf_config, hf_state = _read_hf_dir(Path(src))
    return model_config_from_hf(hf_config), convert_hf_state_dict(hf_state)
