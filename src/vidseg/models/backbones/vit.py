"""DINOv2 Vision Transformer (ViT-S/B/L) and its use as a res2..res5 backbone.

Parameter names are those of the official DINOv2 code (and of DVIS++'s copy of it, `backbone.vit_module.*`):
`patch_embed.proj`, `cls_token` [1, 1, C], `pos_embed` [1, 1 + N, C], `mask_token` [1, C],
`blocks.i.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}`, `norm`. LayerNorms use
eps 1e-6, the MLP exact GELU, attention one fused `qkv` projection.

The learned position embedding covers a square grid of sqrt(N) x sqrt(N) patches; any other grid gets it by
bicubic interpolation exactly as DINOv2's `interpolate_pos_encoding` does (see `interpolate_pos_encoding`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidseg.models.backbones.base import RES_NAMES, RES_STRIDES, Backbone, drop_path
from vidseg.models.backbones.spatial_prior import SpatialPriorModule

LN_EPS = 1e-6


@dataclass(frozen=True)
class ViTSpec:
    """Sizes of one ViT variant."""

    embed_dim: int
    depth: int
    num_heads: int


VIT_SPECS = {
    "s": ViTSpec(384, 12, 6),
    "b": ViTSpec(768, 12, 12),
    "l": ViTSpec(1024, 24, 16),
}


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> C channels: [B, 3, H, W] (H, W multiples of p) -> [B, C, H/p, W/p]."""

    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection: [B, N, C] -> [B, N, C]."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        # DINOv2's order of operations (scale q, then q k^T, softmax, @ v). Measured on golden fixture (D): a
        # fused kernel (scaled_dot_product_attention) gives the same float32 distance to the official values;
        # the ViT blocks do not amplify rounding (all 24 in float32, the rest in float64: 1.9e-5 at res2..5).
        attn = (q * (q.shape[-1] ** -0.5)) @ k.transpose(-2, -1)
        out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 (hidden = 4 C)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel learned scale of a residual branch (`gamma` [C], initialised to `init_values`)."""

    def __init__(self, dim: int, init_values: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init_values))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block with layer scale: x + ls1(attn(norm1 x)), then x + ls2(mlp(norm2 x))."""

    def __init__(self, dim: int, num_heads: int, init_values: float = 1e-5, drop_path_rate: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim, init_values)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, 4 * dim)
        self.ls2 = LayerScale(dim, init_values)
        self.drop_path_rate = drop_path_rate

    def forward(self, x: Tensor) -> Tensor:
        """[B, N, C] -> [B, N, C]."""
        x = x + drop_path(self.ls1(self.attn(self.norm1(x))), self.drop_path_rate, self.training)
        return x + drop_path(self.ls2(self.mlp(self.norm2(x))), self.drop_path_rate, self.training)


class DinoVisionTransformer(nn.Module):
    """DINOv2 ViT: patch embedding + class token + position embedding, `depth` blocks, final LayerNorm.

    Args:
        embed_dim, depth, num_heads: the variant (`VIT_SPECS`).
        patch_size: 14 for DINOv2 checkpoints; DVIS++'s ViT-Adapter uses 16 (the 14x14 kernel resized).
        img_size: pretraining size; the position embedding has (img_size // patch_size)^2 + 1 entries
            (518 / 14 = 592 / 16 = 37).
        interpolate_offset: DINOv2's `interpolate_offset`. 0.1 (official DINOv2 and DVIS++) passes
            scale_factor (g + 0.1) / sqrt(N) to `interpolate`; 0 resizes to exactly g (HuggingFace export).
    """

    def __init__(
        self,
        embed_dim: int,
        depth: int,
        num_heads: int,
        patch_size: int = 14,
        img_size: int = 518,
        init_values: float = 1e-5,
        drop_path_rate: float = 0.0,
        interpolate_offset: float = 0.1,
    ):
        super().__init__()
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.interpolate_offset = interpolate_offset
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, embed_dim))
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, init_values, rates[i]) for i in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS)
        # Only DINOv2's masked-image pretraining uses it; kept so official checkpoints load strictly.
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def interpolate_pos_encoding(self, height: int, width: int) -> Tensor:
        """Position embedding [1, 1 + (height/p) * (width/p), C] for an input of height x width pixels.

        The official test `npatch == N and w == h` returns the stored table untouched for the pretraining
        size; otherwise the patch part is resized bicubically (align_corners=False, no antialias) and the
        class-token entry is kept.
        """
        pos = self.pos_embed
        n = pos.shape[1] - 1
        gh, gw = height // self.patch_size, width // self.patch_size
        if gh * gw == n and height == width:
            return pos
        side = int(math.sqrt(n))
        patch_pos = pos[:, 1:].float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
        if self.interpolate_offset:
            # The offset avoids floor(side * scale) landing one short through rounding (dino issue #8);
            # the interpolation then uses this scale, not g / side, to place the samples.
            scale = ((gh + self.interpolate_offset) / side, (gw + self.interpolate_offset) / side)
            patch_pos = F.interpolate(patch_pos, scale_factor=scale, mode="bicubic", align_corners=False)
        else:
            patch_pos = F.interpolate(patch_pos, size=(gh, gw), mode="bicubic", align_corners=False)
        assert patch_pos.shape[-2:] == (gh, gw)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)
        return torch.cat([pos[:, :1], patch_pos.to(pos.dtype)], dim=1)

    def prepare_tokens(self, images: Tensor) -> tuple[Tensor, int, int]:
        """[B, 3, H, W] (multiples of p) -> tokens [B, 1 + h*w, C] (class token first), h = H/p, w = W/p."""
        x = self.patch_embed(images)
        gh, gw = x.shape[-2:]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        return x + self.interpolate_pos_encoding(images.shape[-2], images.shape[-1]), gh, gw

    def forward(self, images: Tensor) -> Tensor:
        """[B, 3, H, W] (multiples of p) -> final normed tokens [B, 1 + (H/p)(W/p), C]."""
        x, _, _ = self.prepare_tokens(images)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


def build_vit(size: str, patch_size: int = 14, img_size: int = 518, **kwargs: float) -> DinoVisionTransformer:
    """The DINOv2 ViT-`size` ("s", "b" or "l")."""
    spec = VIT_SPECS[size]
    return DinoVisionTransformer(spec.embed_dim, spec.depth, spec.num_heads, patch_size, img_size, **kwargs)


def resample_grid(features: Tensor, patch_size: int, stride: int, out_hw: tuple[int, int]) -> Tensor:
    """Bilinearly resample a stride-`patch_size` map [B, C, h, w] onto the stride-`stride` grid [B, C, *out_hw].

    Output pixel i samples input coordinate (i + 0.5) * stride / patch_size - 0.5 (pixel-centre aligned,
    like `interpolate(scale_factor=patch/stride, align_corners=False)`), clamped at the border, so any
    output size works, including ones `interpolate` cannot produce from a non-integer scale.
    """
    ratio = stride / patch_size
    h, w = features.shape[-2:]
    ys = ((torch.arange(out_hw[0], device=features.device, dtype=features.dtype) + 0.5) * ratio).clamp(0.5, h - 0.5)
    xs = ((torch.arange(out_hw[1], device=features.device, dtype=features.dtype) + 0.5) * ratio).clamp(0.5, w - 0.5)
    # grid_sample with align_corners=False: -1 and 1 are the outer edges, so coordinate c -> 2 c / size - 1.
    grid = torch.stack(torch.meshgrid(2 * xs / w - 1, 2 * ys / h - 1, indexing="xy"), dim=-1)
    grid = grid.unsqueeze(0).expand(features.shape[0], -1, -1, -1)
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="border", align_corners=False)


class DinoV2Backbone(Backbone):
    """A plain DINOv2 ViT as a res2..res5 backbone, with no parameters besides the ViT's.

    The image is zero-padded bottom/right to a multiple of the patch size. res2, res3, res4, res5 are the
    tokens after the last block of each quarter of the depth (blocks 2/5/8/11 of ViT-S/B, 5/11/17/23 of
    ViT-L), each through the final LayerNorm (DINOv2's `get_intermediate_layers(norm=True)`), laid out on
    the patch grid and bilinearly resampled to strides 4/8/16/32; all four have `embed_dim` channels.

    `freeze_vit` stops every ViT parameter from training and runs the ViT without autograd in eval mode.

    `spatial_prior` (channels, 0 = none) adds ViT-Adapter's convolutional stem (`spm`): its stride 4..32
    maps are added to the resampled taps, giving the masks detail finer than a patch. Its output projections
    start at zero, so a stem added to a trained model starts from that model's features.
    """

    def __init__(self, vit: DinoVisionTransformer, freeze_vit: bool = False, spatial_prior: int = 0):
        super().__init__()
        self.vit = vit
        depth = len(vit.blocks)
        self.taps = [depth * (i + 1) // 4 - 1 for i in range(4)]
        self.out_channels = dict.fromkeys(RES_NAMES, vit.embed_dim)
        self.freeze_vit = freeze_vit
        if freeze_vit:
            vit.requires_grad_(False)
        self.spm = SpatialPriorModule(spatial_prior, vit.embed_dim) if spatial_prior else None
        if self.spm is not None:
            for fc in (self.spm.fc1, self.spm.fc2, self.spm.fc3, self.spm.fc4):
                for p in fc.parameters():
                    nn.init.zeros_(p)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """[B, 3, H, W] normalised -> {res_s: [B, C, ceil(H/s), ceil(W/s)]}."""
        height, width = images.shape[-2:]
        p = self.vit.patch_size
        padded = F.pad(images, (0, -width % p, 0, -height % p))
        if self.freeze_vit:
            self.vit.eval()
            with torch.no_grad():
                taps = self._taps(padded)
        else:
            taps = self._taps(padded)
        out = {}
        for name, tokens in zip(RES_NAMES, taps):
            s = RES_STRIDES[name]
            out[name] = resample_grid(tokens, p, s, (-(-height // s), -(-width // s)))
        if self.spm is not None:
            for name, prior in zip(RES_NAMES, self.spm(images)):
                out[name] = out[name] + prior
        return out

    def _taps(self, padded: Tensor) -> list[Tensor]:
        """Normed tokens after each tapped block, as maps [B, C, H/p, W/p]."""
        x, gh, gw = self.vit.prepare_tokens(padded)
        maps = []
        for i, blk in enumerate(self.vit.blocks):
            x = blk(x)
            if i in self.taps:
                patch = self.vit.norm(x)[:, 1:]
                maps.append(patch.transpose(1, 2).reshape(x.shape[0], -1, gh, gw))
        return maps

    def stages(self) -> list[list[str]]:
        """Stem = patch embedding; then the four quarters of the blocks."""
        bounds = [-1, *self.taps]
        quarters = [[f"vit.blocks.{j}" for j in range(bounds[i] + 1, bounds[i + 1] + 1)] for i in range(4)]
        return [["vit.patch_embed"], *quarters]
