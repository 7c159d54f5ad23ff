"""The ViT-Adapter of DVIS++ (`D2VitAdapterDinoV2`): a DINOv2 ViT plus a convolutional spatial prior, giving
res2..res5 at strides 4/8/16/32, all with the ViT's width.

Structure and parameter names are those of DVIS++ (`mask2former/modeling/backbones_vitAdapter/adapter.py`),
so a DVIS++ checkpoint's `backbone.*` tensors load one to one (`official_backbone_state`):

* `vit_module`: DINOv2 ViT with 16x16 patches and a 37x37 position table (img_size 592);
* `spm` (spatial prior module): conv stem `spm.stem` (3 convs + BatchNorm + ReLU, max-pool; stride 4), then
  `spm.conv2..4` (stride 8, 16, 32), each projected to the ViT width by a 1x1 conv `spm.fc1..4`;
* `level_embed` [3, C] added to the stride 8/16/32 prior maps, which are flattened into one token set `c`;
* `interactions.i` (one per group of ViT blocks): DVIS++ uses the injector-free "efficient" block: the ViT
  blocks run on the patch tokens (class token prepended), then `extractor` updates `c` by deformable
  attention (one level: the stride-16 ViT tokens) and a ConvFFN with a depthwise 3x3 conv; the last
  interaction has two `extra_extractors`;
* outputs: res2 = `up`(stride-8 c, ConvTranspose2d x2) + fc1 prior; the ViT tokens after each interaction are
  resized (x4, x2, x1, x0.5, bilinear) and added to the four levels; `norm1..4` BatchNorms.

The input is zero-padded bottom/right to a multiple of 32 (what the official model requires) and the outputs
are cropped back to ceil(H/s) x ceil(W/s).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidseg.config import BackboneConfig, BackboneName
from vidseg.errors import CheckpointError
from vidseg.models.backbones.base import RES_NAMES, RES_STRIDES, Backbone
from vidseg.models.backbones.spatial_prior import SpatialPriorModule
from vidseg.models.backbones.vit import LN_EPS, DinoVisionTransformer, build_vit
from vidseg.models.ops.ms_deform_attn import MultiScaleDeformableAttention


@dataclass(frozen=True)
class AdapterSpec:
    """Adapter hyperparameters of one ViT size (DVIS++ `get_adapter_args`)."""

    deform_num_heads: int
    interaction_indexes: tuple[tuple[int, int], ...]
    conv_inplane: int = 64
    n_points: int = 4
    cffn_ratio: float = 0.25


# vitl and vitb as DVIS++ defines them; vits (not in DVIS++) as the original ViT-Adapter-S (6 heads).
ADAPTER_SPECS = {
    "s": AdapterSpec(6, ((0, 2), (3, 5), (6, 8), (9, 11))),
    "b": AdapterSpec(12, ((0, 2), (3, 5), (6, 8), (9, 11))),
    "l": AdapterSpec(16, ((0, 5), (6, 11), (12, 17), (18, 23))),
}
ADAPTER_PATCH = 16
ADAPTER_IMG_SIZE = 592


class DWConv(nn.Module):
    """Depthwise 3x3 conv applied to each of the three levels of a flattened token set separately."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: Tensor, shapes: list[tuple[int, int]]) -> Tensor:
        """x [B, sum h*w, C] laid out level by level with sizes `shapes` -> same shape."""
        b, _, c = x.shape
        parts = x.split([h * w for h, w in shapes], dim=1)
        out = [
            self.dwconv(p.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
            for p, (h, w) in zip(parts, shapes)
        ]
        return torch.cat(out, dim=1)


class ConvFFN(nn.Module):
    """fc1 -> depthwise conv -> GELU -> fc2 over a multi-level token set [B, N, C] -> [B, N, C]."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, shapes: list[tuple[int, int]]) -> Tensor:
        return self.fc2(F.gelu(self.dwconv(self.fc1(x), shapes)))


class Extractor(nn.Module):
    """Prior tokens `c` read the ViT tokens by single-level deformable attention, then a ConvFFN; residual both."""

    def __init__(self, dim: int, num_heads: int, n_points: int, cffn_ratio: float):
        super().__init__()
        self.query_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.feat_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = MultiScaleDeformableAttention(dim, num_heads, num_levels=1, num_points=n_points)
        self.ffn = ConvFFN(dim, int(dim * cffn_ratio))
        self.ffn_norm = nn.LayerNorm(dim, eps=LN_EPS)

    def forward(
        self, c: Tensor, reference_points: Tensor, feat: Tensor, feat_shape: tuple[int, int],
        c_shapes: list[tuple[int, int]],
    ) -> Tensor:
        """c [B, N_c, C] (levels `c_shapes`), feat [B, h*w, C] (ViT tokens, `feat_shape`) -> new c [B, N_c, C]."""
        c = c + self.attn(self.query_norm(c), reference_points, self.feat_norm(feat), [feat_shape])
        return c + self.ffn(self.ffn_norm(c), c_shapes)


class InteractionBlock(nn.Module):
    """DVIS++'s `InteractionBlockWithCls_Efficient`: no injector; run a group of ViT blocks, then extract."""

    def __init__(self, dim: int, spec: AdapterSpec, extra_extractor: bool):
        super().__init__()
        self.extractor = Extractor(dim, spec.deform_num_heads, spec.n_points, spec.cffn_ratio)
        self.extra_extractors = (
            nn.Sequential(*[Extractor(dim, spec.deform_num_heads, spec.n_points, spec.cffn_ratio) for _ in range(2)])
            if extra_extractor
            else None
        )

    def forward(
        self, x: Tensor, c: Tensor, blocks: nn.ModuleList, reference_points: Tensor, grid: tuple[int, int],
        c_shapes: list[tuple[int, int]], vit_grad: bool = True,
    ) -> tuple[Tensor, Tensor]:
        """x [B, 1 + h*w, C] ViT tokens (class token first), c [B, N_c, C] prior tokens -> (new x, new c).

        `vit_grad=False` runs the ViT blocks without autograd (a frozen ViT).
        """
        with torch.set_grad_enabled(torch.is_grad_enabled() and vit_grad):
            for blk in blocks:
                x = blk(x)
        patch = x[:, 1:]
        c = self.extractor(c, reference_points, patch, grid, c_shapes)
        if self.extra_extractors is not None:
            for extractor in self.extra_extractors:
                c = extractor(c, reference_points, patch, grid, c_shapes)
        return x, c


def reference_points(shapes: list[tuple[int, int]], device: torch.device) -> Tensor:
    """Pixel-centre (x, y) in [0, 1] of every token of the levels `shapes`: [1, sum h*w, 1, 2]."""
    refs = []
    for h, w in shapes:
        ys, xs = torch.meshgrid(
            torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device),
            torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device),
            indexing="ij",
        )
        refs.append(torch.stack((xs.reshape(-1) / w, ys.reshape(-1) / h), -1))
    return torch.cat(refs, 0)[None, :, None]


class ViTAdapter(Backbone):
    """DVIS++ ViT-Adapter over a DINOv2 ViT: [B, 3, H, W] -> {res2..res5: [B, C, ceil(H/s), ceil(W/s)]}.

    Args:
        vit: a `DinoVisionTransformer` with 16x16 patches (the adapter's strides assume it).
        spec: `ADAPTER_SPECS[size]`.
        freeze_vit: DVIS++'s FREEZE_VIT: the ViT's parameters stop training, and it runs without autograd in
            eval mode (DVIS++ runs it under no_grad whenever FINETUNE is off, which all its configs do).
        use_extra_extractor: two more extractors in the last interaction (DVIS++: on).
    """

    def __init__(
        self, vit: DinoVisionTransformer, spec: AdapterSpec, freeze_vit: bool = False, use_extra_extractor: bool = True
    ):
        super().__init__()
        if vit.patch_size != ADAPTER_PATCH:
            raise ValueError(f"the ViT-Adapter needs 16x16 patches, got {vit.patch_size}")
        dim = vit.embed_dim
        self.interaction_indexes = spec.interaction_indexes
        self.level_embed = nn.Parameter(torch.randn(3, dim))
        self.spm = SpatialPriorModule(spec.conv_inplane, dim)
        n = len(spec.interaction_indexes)
        self.interactions = nn.ModuleList(
            [InteractionBlock(dim, spec, use_extra_extractor and i == n - 1) for i in range(n)]
        )
        self.up = nn.ConvTranspose2d(dim, dim, 2, 2)
        self.norm1 = nn.BatchNorm2d(dim)
        self.norm2 = nn.BatchNorm2d(dim)
        self.norm3 = nn.BatchNorm2d(dim)
        self.norm4 = nn.BatchNorm2d(dim)
        self.vit_module = vit
        self.freeze_vit = freeze_vit
        if freeze_vit:
            vit.requires_grad_(False)
        self.out_channels = dict.fromkeys(RES_NAMES, dim)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """[B, 3, H, W] normalised -> {res_s: [B, C, ceil(H/s), ceil(W/s)]}."""
        height, width = images.shape[-2:]
        x = F.pad(images, (0, -width % 32, 0, -height % 32))
        hp, wp = x.shape[-2:]
        b = x.shape[0]
        c_shapes = [(hp // 8, wp // 8), (hp // 16, wp // 16), (hp // 32, wp // 32)]
        grid = c_shapes[1]  # the ViT's patch grid (stride 16)
        refs = reference_points(c_shapes, x.device)

        c1, c2, c3, c4 = self.spm(x)
        c = torch.cat(
            [level.flatten(2).transpose(1, 2) + self.level_embed[i] for i, level in enumerate((c2, c3, c4))], dim=1
        )
        if self.freeze_vit:
            self.vit_module.eval()
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_vit):
            tokens, _, _ = self.vit_module.prepare_tokens(x)

        outs = []
        for layer, (first, last) in zip(self.interactions, self.interaction_indexes):
            blocks = self.vit_module.blocks[first : last + 1]
            tokens, c = layer(tokens, c, blocks, refs, grid, c_shapes, vit_grad=not self.freeze_vit)
            outs.append(tokens[:, 1:].transpose(1, 2).reshape(b, -1, *grid))

        sizes = [h * w for h, w in c_shapes]
        c2, c3, c4 = (t.transpose(1, 2).reshape(b, -1, h, w) for t, (h, w) in zip(c.split(sizes, 1), c_shapes))
        c1 = self.up(c2) + c1
        x1, x2, x3, x4 = outs
        c1 = c1 + F.interpolate(x1, scale_factor=4, mode="bilinear", align_corners=False)
        c2 = c2 + F.interpolate(x2, scale_factor=2, mode="bilinear", align_corners=False)
        c3 = c3 + x3
        c4 = c4 + F.interpolate(x4, scale_factor=0.5, mode="bilinear", align_corners=False)
        feats = (self.norm1(c1), self.norm2(c2), self.norm3(c3), self.norm4(c4))
        out = {}
        for name, f in zip(RES_NAMES, feats):
            s = RES_STRIDES[name]
            out[name] = f[..., : -(-height // s), : -(-width // s)]
        return out

    def stages(self) -> list[list[str]]:
        """One freezing unit, the ViT (`freeze_at=1` is the same as `freeze_vit`, minus the no-grad run)."""
        return [["vit_module"]]


def build_vit_adapter(size: str, freeze_vit: bool = False, drop_path_rate: float = 0.0) -> ViTAdapter:
    """The DVIS++ ViT-Adapter over DINOv2 ViT-`size` ("s", "b", "l"): 16x16 patches, img_size 592."""
    vit = build_vit(size, patch_size=ADAPTER_PATCH, img_size=ADAPTER_IMG_SIZE, drop_path_rate=drop_path_rate)
    return ViTAdapter(vit, ADAPTER_SPECS[size], freeze_vit=freeze_vit)


def official_backbone_state(official: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """DVIS++ `D2VitAdapterDinoV2` tensors (checkpoint keys with `backbone.` removed) -> `ViTAdapter` state dict.

    The module names are the official ones, so this is the identity on names; it adds the BatchNorm step
    counters (`num_batches_tracked`, unused at inference) where a source lacks them, so the result loads
    with `strict=True`, and rejects keys that are not the adapter's.
    """
    known = ("level_embed", "spm.", "interactions.", "up.", "norm1.", "norm2.", "norm3.", "norm4.", "vit_module.")
    state: dict[str, Tensor] = {}
    for key, value in official.items():
        if not key.startswith(known):
            raise KeyError(f"{key!r} is not a D2VitAdapterDinoV2 key (pass backbone.* keys without the prefix)")
        state[key] = value if isinstance(value, Tensor) else torch.as_tensor(value)
    for key in list(state):
        if key.endswith(".running_mean"):
            state.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.zeros((), dtype=torch.long))
    return state


def patch16_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A DINOv2 ViT state dict with 14x14 patches made loadable into the adapter's 16x16-patch ViT.

    The patch kernel [C, 3, 14, 14] is resized bilinearly to 16x16 (align_corners=True), as DVIS++'s
    `load_pretrained_weights` does; the 37x37 position table fits as it is (518 / 14 = 592 / 16).
    """
    out = dict(state)
    kernel = out["patch_embed.proj.weight"]
    if kernel.shape[-1] != ADAPTER_PATCH:
        out["patch_embed.proj.weight"] = F.interpolate(
            kernel, size=(ADAPTER_PATCH, ADAPTER_PATCH), mode="bilinear", align_corners=True
        )
    return out


def official_backbone_config(official: Mapping[str, Tensor]) -> BackboneConfig:
    """The `BackboneConfig` of DVIS++ `D2VitAdapterDinoV2` tensors (keys without `backbone.`): the ViT size
    from the width of its class token."""
    width = int(official["vit_module.cls_token"].shape[-1])
    sizes: dict[int, BackboneName] = {384: "vit_adapter_s", 768: "vit_adapter_b", 1024: "vit_adapter_l"}
    if width not in sizes:
        raise CheckpointError(f"backbone.vit_module.cls_token: width {width} is not ViT-S/B/L (384/768/1024)")
    return BackboneConfig(name=sizes[width])
