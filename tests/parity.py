"""Golden fixtures of the official Mask2Former / DVIS++ code (`../shared/parity`, see its README).

* `parity_root()` finds the folder; when it is missing the tests skip, except under `CI=true`, where a
  missing golden folder is a failure (a silent skip there would hide a regression).
* `generate(key, shape)` is the fixture README's deterministic weight generator (section 2), so the
  official weights are rebuilt here from their key names and shapes alone.
* `official_state_dict(folder)` rebuilds a whole official state dict from `official_keys.json`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

REPO_ROOT = Path(__file__).resolve().parents[1]


def parity_root() -> Path:
    """`../shared/parity` (or `$VIDSEG_PARITY`); skip when absent, fail when absent under CI=true."""
    env = os.environ.get("VIDSEG_PARITY")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "parity"
    if not path.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"golden fixtures missing: {path} (CI=true requires them)")
        pytest.skip(f"golden fixtures not beside this checkout: {path} (set VIDSEG_PARITY)")
    return path


def fixture(name: str) -> Path:
    """One golden folder (e.g. `m2f_r50_coco_panoptic`), under the same missing-folder rule."""
    path = parity_root() / name
    if not path.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"golden fixture missing: {path}")
        pytest.skip(f"golden fixture missing: {path}")
    return path


def tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def unpack_masks(packed: torch.Tensor, width: int) -> np.ndarray:
    """Bit-packed (big bit order, along the last axis) masks -> bool array."""
    return np.unpackbits(packed.numpy(), axis=-1, count=width).astype(bool)


# --- the weight generator (fixture README, section 2) ------------------------------------------------------


def _fnv1a32(text: str) -> int:
    h = 2166136261
    for b in text.encode("utf-8"):
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def _uniform(key: str, n: int) -> np.ndarray:
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps mod 2**64 on purpose
        z = (np.uint64(_fnv1a32(key)) << np.uint64(32)) | np.arange(n, dtype=np.uint64)
        z = z * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(40)).astype(np.int64) - 2**23) / 2.0**23


_GAINS = [("tracker.class_embed", 5.0), ("class_embed", 3.0), ("mask_embed.layers.2", 3.0),
          ("self_attn.out_proj", 0.05), ("multihead_attn.out_proj", 0.1), ("linear2", 0.2),
          ("conv3.weight", 0.5), ("backbone.", math.sqrt(2.0))]
_BIASES = [("sampling_offsets", 0.0, 2.0), ("attention_weights", 0.0, 1.0),
           ("mask_feature", 0.1, 0.05), ("mask_embed.layers.2", -0.2, 0.05)]
_EMBEDDINGS = ("query_feat.weight", "query_embed.weight", "level_embed.weight", "level_embed")


def generate(key: str, shape: list[int] | tuple[int, ...]) -> np.ndarray:
    """The official tensor `key` of `shape` as the fixtures generated it (float32)."""
    u = _uniform(key, math.prod(shape))
    if key.endswith("running_var"):
        off, scale = 1.25, 0.25
    elif key.endswith("running_mean"):
        off, scale = 0.0, 0.1
    elif len(shape) == 1 and key.endswith("weight"):
        off, scale = 1.0, 0.2
    elif len(shape) == 1:
        off, scale = next(((o, s) for k, o, s in _BIASES if k in key), (0.0, 0.1))
    elif key.endswith(_EMBEDDINGS):
        off, scale = 0.0, math.sqrt(3.0)
    else:
        gain = next((g for k, g in _GAINS if k in key), 1.0)
        off, scale = 0.0, gain * math.sqrt(3.0 / math.prod(shape[1:]))
        rows = u.reshape(shape[0], -1)
        u = (rows - rows.sum(axis=1, keepdims=True) / rows.shape[1]).reshape(-1)
    return (off + scale * u).astype(np.float32).reshape(shape)


def official_keys(folder: Path) -> list[dict]:
    return json.loads((folder / "official_keys.json").read_text())["keys"]


def official_state_dict(folder: Path, *, drop_prefixes: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The official state dict of a fixture model, in official key order, as numpy arrays.

    `criterion.empty_weight` gets the official default (ones, last 0.1), integer buffers zeros.
    """
    state: dict[str, np.ndarray] = {}
    for entry in official_keys(folder):
        key, shape = entry["key"], entry["shape"]
        if key.startswith(drop_prefixes):
            continue
        if key == "criterion.empty_weight":
            w = np.ones(shape, np.float32)
            w[-1] = 0.1
            state[key] = w
        elif not entry["dtype"].startswith("float"):
            state[key] = np.zeros(shape, dtype=np.dtype(entry["dtype"]))
        else:
            state[key] = generate(key, shape)
    return state
