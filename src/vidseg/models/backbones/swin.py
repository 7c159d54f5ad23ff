"""Swin Transformer (T/S/B/L) as the detection/segmentation backbone Mask2Former uses.

Parameter names follow the original Microsoft implementation as Mask2Former checkpoints store it:
`patch_embed.proj`, `patch_embed.norm`, `layers.i.blocks.j.{norm1, attn.qkv, attn.proj,
attn.relative_position_bias_table, norm2, mlp.fc1, mlp.fc2}`, `layers.i.downsample.{norm, reduction}` and
one output LayerNorm per level, `norm0..norm3`. `load_swin_weights` loads such checkpoints (ImageNet ones too,
which lack `norm0..3`); `swin_from_hf_state_dict` converts HuggingFace `SwinModel` / `SwinBackbone` weights.

Behaviour (identical to the segmentation Swin of Mask2Former and to HF `SwinBackbone`):
* the image is zero-padded right/bottom to a multiple of 4, then 4x4 patches -> embed_dim, LayerNorm;
* every block LayerNorms, zero-pads the map right/bottom to a multiple of the window, attends within windows
  (odd blocks cyclically shifted by window // 2 with the -100 cross-region mask, always, even when the map
  is smaller than a window), crops back; relative position bias per head;
* patch merging zero-pads odd sizes by one row/column, so each level is ceil of the previous / 2;
* res2..res5 are the stage outputs *before* merging, each through its own LayerNorm `norm{i}`.
So res_s is [B, C_s, ceil(H/s), ceil(W/s)] with C = embed_dim * (1, 2, 4, 8).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidseg.errors import CheckpointError
from vidseg.models.backbones.base import RES_NAMES, Backbone, drop_path


@dataclass(frozen=True)
class SwinSpec:
    """Sizes of one Swin variant."""

    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: int


# Window 7 for the 224-pretrained T/S/B, 12 for L (and for B pretrained at 384: pass window_size=12).
SWIN_SPECS = {
    "swin_t": SwinSpec(96, (2, 2, 6, 2), (3, 6, 12, 24), 7),
    "swin_s": SwinSpec(96, (2, 2, 18, 2), (3, 6, 12, 24), 7),
    "swin_b": SwinSpec(128, (2, 2, 18, 2), (4, 8, 16, 32), 7),
    "swin_l": SwinSpec(192, (2, 2, 18, 2), (6, 12, 24, 48), 12),
}


def relative_position_index(window: int) -> Tensor:
    """[w*w, w*w] index into the (2w-1)^2 bias table for each (query, key) pair of a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)  # [N, N, 2], in 0..2w-2
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def shift_mask(height: int, width: int, window: int, shift: int, device: torch.device) -> Tensor:
    """Additive mask [num_windows, w*w, w*w] (0 or -100) for shifted windows on a padded H x W map.

    After the cyclic shift, a window may hold tokens from up to 3x3 regions that were not neighbours;
    tokens of different regions must not attend to each other.
    """

    def regions(n: int) -> Tensor:
        idx = torch.arange(n, device=device)
        return (idx >= n - window).long() + (idx >= n - shift).long()

    label = regions(height)[:, None] * 3 + regions(width)[None, :]  # [H, W]
    label = label.view(height // window, window, width // window, window).transpose(1, 2).reshape(-1, window**2)
    diff = label[:, None, :] != label[:, :, None]
    return torch.zeros(diff.shape, device=device).masked_fill(diff, -100.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative position bias."""

    relative_position_index: Tensor

    def __init__(self, dim: int, num_heads: int, window: int):
        super().__init__()
        self.num_heads = num_heads
        self.window = window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        # Derived from the window size: not saved, so checkpoints stay independent of how we compute it.
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)

    def forward(self, windows: Tensor, mask: Tensor | None) -> Tensor:
        """windows [B, nW, N, C] (N = w*w), mask [nW, N, N] or None -> [B, nW, N, C]."""
        b, nw, n, c = windows.shape
        qkv = self.qkv(windows).view(b * nw, n, 3, self.num_heads, c // self.num_heads)
        # 4-D [B*nW, heads, N, hd]: scaled_dot_product_attention's fused CPU kernel takes only 4-D inputs
        # (5-D ones fall back to its unfused path, ~2x slower here).
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, self.num_heads).permute(2, 0, 1)  # [heads, N, N]
        if mask is None:
            attn_mask = bias[None]
        else:
            attn_mask = (bias + mask[:, None]).repeat(b, 1, 1, 1)  # [B*nW, heads, N, N]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask.to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(b, nw, n, c))


class Mlp(nn.Module):
    """Linear -> GELU -> Linear (hidden = 4 x dim)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm (shifted) window attention + MLP, both residual with stochastic depth."""

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, drop_path_rate: float):
        super().__init__()
        self.window, self.shift, self.drop_path_rate = window, shift, drop_path_rate
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """x [B, H, W, C] -> [B, H, W, C]; mask is `shift_mask` of the padded size (shifted blocks only)."""
        b, h, w, c = x.shape
        ws = self.window
        y = F.pad(self.norm1(x), (0, 0, 0, (-w) % ws, 0, (-h) % ws))  # pad after the norm: zeros stay zeros
        hp, wp = y.shape[1:3]
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
        y = y.view(b, hp // ws, ws, wp // ws, ws, c).transpose(2, 3).reshape(b, -1, ws * ws, c)
        y = self.attn(y, mask if self.shift else None)
        y = y.view(b, hp // ws, wp // ws, ws, ws, c).transpose(2, 3).reshape(b, hp, wp, c)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), (1, 2))
        x = x + drop_path(y[:, :h, :w], self.drop_path_rate, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path_rate, self.training)


class PatchMerging(nn.Module):
    """2x2 neighbourhood -> concat (4C) -> LayerNorm -> Linear to 2C; odd sizes are zero-padded first."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """x [B, H, W, C] -> [B, ceil(H/2), ceil(W/2), 2C]."""
        h, w = x.shape[1:3]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        # Order (row, col) = (0,0), (1,0), (0,1), (1,1): the channel layout the pretrained reduction expects.
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """`depth` blocks alternating regular / shifted windows, then optional patch merging."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window: int,
        drop_path_rates: list[float],
        downsample: bool,
    ):
        super().__init__()
        self.window = window
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window, 0 if j % 2 == 0 else window // 2, drop_path_rates[j])
            for j in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, H, W, C] -> (stage output [B, H, W, C], next-stage input [B, ceil(H/2), ceil(W/2), 2C])."""
        h, w = x.shape[1:3]
        ws = self.window
        mask = None
        if len(self.blocks) > 1:
            hp, wp = h + (-h) % ws, w + (-w) % ws
            mask = shift_mask(hp, wp, ws, ws // 2, x.device)
        for block in self.blocks:
            x = block(x, mask)
        return x, (self.downsample(x) if self.downsample is not None else x)


class PatchEmbed(nn.Module):
    """Zero-pad to a multiple of the patch size, 4x4 stride-4 conv to embed_dim, LayerNorm."""

    def __init__(self, embed_dim: int, patch: int = 4):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(3, embed_dim, patch, patch)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, images: Tensor) -> Tensor:
        """images [B, 3, H, W] -> [B, ceil(H/4), ceil(W/4), embed_dim]."""
        h, w = images.shape[-2:]
        x = self.proj(F.pad(images, (0, (-w) % self.patch, 0, (-h) % self.patch)))
        return self.norm(x.permute(0, 2, 3, 1))


class SwinTransformer(Backbone):
    """Swin backbone returning res2..res5 (channels embed_dim x 1, 2, 4, 8; strides 4..32).

    Args:
        embed_dim, depths, num_heads: sizes (see `SWIN_SPECS`; any small values work for tests).
        window_size: attention window (7 for 224-pretrained T/S/B, 12 for L and 384-pretrained B).
        drop_path_rate: stochastic-depth rate, increasing linearly from 0 over all blocks to this value.
    """

    def __init__(
        self,
        embed_dim: int = 96,
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        window_size: int = 7,
        drop_path_rate: float = 0.3,
    ):
        super().__init__()
        if len(depths) != 4 or len(num_heads) != 4:
            raise ValueError("Swin needs exactly 4 stages (depths and num_heads of length 4)")
        self.window_size = window_size
        self.patch_embed = PatchEmbed(embed_dim)
        total = sum(depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        dims = [embed_dim * 2**i for i in range(4)]
        self.layers = nn.ModuleList(
            SwinStage(
                dims[i],
                depths[i],
                num_heads[i],
                window_size,
                rates[sum(depths[:i]) : sum(depths[: i + 1])],
                downsample=i < 3,
            )
            for i in range(4)
        )
        for i, d in enumerate(dims):
            self.add_module(f"norm{i}", nn.LayerNorm(d))
        self.out_channels = dict(zip(RES_NAMES, dims))
        self.apply(_init_weights)

    def stages(self) -> list[list[str]]:
        return [
            ["patch_embed"],
            ["layers.0", "norm0"],
            ["layers.1", "norm1"],
            ["layers.2", "norm2"],
            ["layers.3", "norm3"],
        ]

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """images [B, 3, H, W] -> res2..res5 [B, C_l, ceil(H/s), ceil(W/s)]."""
        x = self.patch_embed(images)
        out = {}
        for i, name in enumerate(RES_NAMES):
            y, x = self.layers[i](x)
            out[name] = getattr(self, f"norm{i}")(y).permute(0, 3, 1, 2).contiguous()
        return out


def _init_weights(m: nn.Module) -> None:
    # The Swin recipe: truncated-normal(0.02) linears with zero bias, unit LayerNorms.
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def build_swin(name: str, window_size: int | None = None, drop_path_rate: float = 0.3) -> SwinTransformer:
    """A preset Swin ("swin_t", "swin_s", "swin_b", "swin_l"), optionally with another window size."""
    spec = SWIN_SPECS[name]
    return SwinTransformer(spec.embed_dim, spec.depths, spec.num_heads, window_size or spec.window_size, drop_path_rate)


# ---------------------------------------------------------------------------------------------------------
# Weights

_IGNORED = re.compile(r"^(head\.|norm\.|.*\.attn_mask$|.*\.relative_position_index$)")
_OUTPUT_NORM = re.compile(r"^norm[0-3]\.")


def load_swin_weights(model: SwinTransformer, state_dict: dict[str, Tensor], source: str = "<state dict>") -> None:
    """Load Microsoft-layout Swin weights strictly (after dropping what is not part of the backbone).

    Accepted: Mask2Former/detection checkpoints (optionally under a `backbone.` prefix) and ImageNet
    classification checkpoints (`head.*`, the final `norm.*`, `attn_mask` and `relative_position_index`
    buffers are dropped; `norm0..3`, which those lack, keep their initialisation). Anything else missing,
    unexpected or mis-shaped raises `CheckpointError`.
    """
    if any(k.startswith("backbone.") for k in state_dict):
        state_dict = {k[len("backbone.") :]: v for k, v in state_dict.items() if k.startswith("backbone.")}
    sd = {k: v for k, v in state_dict.items() if not _IGNORED.match(k)}
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise CheckpointError(f"{source}: not a Swin checkpoint of this size: {e}") from None
    missing = [k for k in missing if not _OUTPUT_NORM.match(k) or any(_OUTPUT_NORM.match(s) for s in sd)]
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: not a Swin checkpoint of this size: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )


# HF block-level names -> ours. Both the current HF names and the older ones hub checkpoints carry.
_HF_BLOCK = {
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
    "attention.o_proj": "attn.proj",
    "attention.output.dense": "attn.proj",
    "attention.relative_position_bias.relative_position_bias_table": "attn.relative_position_bias_table",
    "attention.self.relative_position_bias_table": "attn.relative_position_bias_table",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
}
_HF_BLOCK_KEY = re.compile(r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.(.+)\.(weight|bias|relative_position_bias_table)$")
_HF_QKV = {
    "attention.q_proj": 0,
    "attention.k_proj": 1,
    "attention.v_proj": 2,
    "attention.self.query": 0,
    "attention.self.key": 1,
    "attention.self.value": 2,
}


def swin_from_hf_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Convert HuggingFace `SwinModel` / `SwinBackbone` weights to this module's (Microsoft) layout.

    Keys may carry any prefix before `embeddings.` / `encoder.` / `hidden_states_norms.` (e.g. `swin.` of
    `SwinBackbone`, or `model.pixel_level_module.encoder.` inside HF Mask2Former); only keys under the prefix
    of `embeddings.patch_embeddings.projection.weight` (and `hidden_states_norms.` beside a `swin.` trunk)
    are used, so a whole HF Mask2Former state dict can be passed. Mapping:

    * `embeddings.patch_embeddings.projection` -> `patch_embed.proj`, `embeddings.norm` -> `patch_embed.norm`
    * `encoder.layers.i.blocks.j.`: `layernorm_before/after` -> `norm1/2`; `attention.{q,k,v}_proj` (or
      the older `attention.self.{query,key,value}`) are concatenated in q, k, v order into `attn.qkv`;
      `attention.o_proj` / `attention.output.dense` -> `attn.proj`; the relative position bias table ->
      `attn.relative_position_bias_table`; `mlp.fc1/fc2` (older: `intermediate.dense` / `output.dense`)
    * `encoder.layers.i.downsample.{norm,reduction}` -> `layers.i.downsample.{norm,reduction}` (same order of
      the four 2x2 neighbours, so no permutation is needed)
    * `hidden_states_norms.stage{i+1}` -> `norm{i}` (SwinBackbone only); the final `layernorm` and pooler of
      `SwinModel` are dropped.
    The result loads with `load_swin_weights` (strictly, up to `norm0..3` for a plain `SwinModel`). Numerics
    equal HF `SwinBackbone` with `out_features=["stage1", ..., "stage4"]` (which always partitions windows).
    """
    anchor = next((k for k in state_dict if k.endswith("embeddings.patch_embeddings.projection.weight")), None)
    if anchor is None:
        raise CheckpointError("not a HuggingFace Swin state dict (no embeddings.patch_embeddings.projection)")
    root = anchor[: -len("embeddings.patch_embeddings.projection.weight")]
    # Current HF `SwinBackbone` nests the trunk under `swin.` but keeps its output norms beside it.
    outer = root[: -len("swin.")] if root.endswith("swin.") else root
    out: dict[str, Tensor] = {}
    qkv: dict[str, list[Tensor | None]] = {}
    for key, value in state_dict.items():
        if key.startswith(root):
            rel = key[len(root) :]
        elif key.startswith(outer + "hidden_states_norms."):
            rel = key[len(outer) :]
        else:
            continue
        if rel.startswith("embeddings.patch_embeddings.projection."):
            out["patch_embed.proj." + rel.rsplit(".", 1)[1]] = value
        elif rel.startswith("embeddings.norm."):
            out["patch_embed.norm." + rel.rsplit(".", 1)[1]] = value
        elif m := re.match(r"hidden_states_norms\.stage(\d)\.(weight|bias)$", rel):
            out[f"norm{int(m.group(1)) - 1}.{m.group(2)}"] = value
        elif m := re.match(r"encoder\.layers\.(\d+)\.downsample\.(.+)$", rel):
            out[f"layers.{m.group(1)}.downsample.{m.group(2)}"] = value
        elif m := _HF_BLOCK_KEY.match(rel):
            layer, block, name, kind = m.groups()
            prefix = f"layers.{layer}.blocks.{block}."
            if kind == "relative_position_bias_table":
                out[prefix + _HF_BLOCK[f"{name}.{kind}"]] = value
            elif name in _HF_QKV:
                qkv.setdefault(f"{prefix}attn.qkv.{kind}", [None, None, None])[_HF_QKV[name]] = value
            elif name in _HF_BLOCK:
                out[f"{prefix}{_HF_BLOCK[name]}.{kind}"] = value
            else:
                raise CheckpointError(f"{key}: unknown HuggingFace Swin parameter")
    for key, parts in qkv.items():
        found = [p for p in parts if p is not None]
        if len(found) < len(parts):
            raise CheckpointError(f"{key}: HuggingFace Swin state dict lacks one of q/k/v")
        out[key] = torch.cat(found, dim=0)
    return out
