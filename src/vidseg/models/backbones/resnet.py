"""ResNet-50/101 (bottleneck, stride on the 3x3 conv) with the torchvision parameter layout.

Parameter names follow torchvision exactly (`conv1`, `bn1`, `layer1.0.conv1`, `layer1.0.downsample.0`,
...), so ImageNet checkpoints in that layout load by key: `load_torchvision_weights` drops the classifier
(`fc.*`) and loads the rest strictly. `FrozenBatchNorm2d` accepts BatchNorm2d entries as they are.

Sizes: conv1 (7x7, s2, p3) and maxpool (3x3, s2, p1) and the stride-2 3x3 convs (p1) each map n -> ceil(n/2),
so res2..res5 are exactly [B, C, ceil(H/s), ceil(W/s)] with C = 256, 512, 1024, 2048 for any H, W.
"""

from __future__ import annotations

from torch import Tensor, nn

from vidseg.errors import CheckpointError
from vidseg.models.backbones.base import RES_NAMES, Backbone, norm2d

DEPTHS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride) -> 1x1 expand (x4), plus identity or projected shortcut."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int, frozen_bn: bool):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = norm2d(width, frozen_bn)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = norm2d(width, frozen_bn)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = norm2d(cout, frozen_bn)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), norm2d(cout, frozen_bn))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(Backbone):
    """ResNet backbone returning res2..res5 (channels 256/512/1024/2048, strides 4/8/16/32).

    Args:
        depths: bottleneck blocks per stage, (3, 4, 6, 3) for ResNet-50, (3, 4, 23, 3) for ResNet-101.
        frozen_bn: use `FrozenBatchNorm2d` (the usual choice when fine-tuning with small per-GPU batches).
    """

    def __init__(self, depths: tuple[int, int, int, int] = DEPTHS["resnet50"], frozen_bn: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = norm2d(64, frozen_bn)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        channels = []
        for i, (width, depth) in enumerate(zip((64, 128, 256, 512), depths)):
            blocks = []
            for j in range(depth):
                # layer1 stays at stride 4 (the maxpool halved already); later stages halve in block 0.
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(Bottleneck(cin, width, stride, frozen_bn))
                cin = width * Bottleneck.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            channels.append(cin)
        self.out_channels = dict(zip(RES_NAMES, channels))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def stages(self) -> list[list[str]]:
        return [["conv1", "bn1"], ["layer1"], ["layer2"], ["layer3"], ["layer4"]]

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """images [B, 3, H, W] -> res2..res5 [B, C_l, ceil(H/s), ceil(W/s)]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        out = {}
        for i, name in enumerate(RES_NAMES):
            x = getattr(self, f"layer{i + 1}")(x)
            out[name] = x
        return out


def load_torchvision_weights(model: ResNet, state_dict: dict[str, Tensor], source: str = "<state dict>") -> None:
    """Load an ImageNet ResNet state dict in torchvision layout, strictly, ignoring the classifier `fc.*`.

    Raises `CheckpointError` listing missing/unexpected keys or shape mismatches.
    """
    sd = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{source}: not a torchvision-layout ResNet state dict: {e}") from None
