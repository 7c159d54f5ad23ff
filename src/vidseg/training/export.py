"""Export a training checkpoint for distribution: weights in half precision, no optimiser state.

The result is an ordinary checkpoint directory (same files, manifest and stage), so `load_model` and
`VideoPredictor.from_checkpoint` read it unchanged: `load_state_dict` copies the fp16 tensors into the
model's fp32 parameters (a cast), so the model still runs in fp32.

The exported config has `model.backbone.pretrained: false`: the file already holds the trained backbone,
and loading the ImageNet weights first would only be thrown away (and needs their package).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from vidseg.errors import CheckpointError
from vidseg.io.checkpoint import load_checkpoint, save_checkpoint

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
    weights = {}
    for name, tensor in ckpt.state_dict.items():
        if tensor.is_floating_point():
            cast = tensor.to(target)
            # A finite weight that becomes inf would silently break the model: refuse instead.
            if not torch.isfinite(cast).all() and torch.isfinite(tensor).all():
                raise CheckpointError(f"{ckpt.path}: {name}: values exceed the range of {dtype}")
            tensor = cast
        weights[name] = tensor
    model = ckpt.config.model
    config = replace(ckpt.config, model=replace(model, backbone=replace(model.backbone, pretrained=False)))
    return save_checkpoint(dst, weights, config, ckpt.stage, ckpt.iteration, classes=ckpt.classes)
