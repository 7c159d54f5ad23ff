"""A small, genuinely trainable conv backbone for fast CPU tests and tiny synthetic configs.

Stem: two 3x3 convs (stride 2 each) to stride 4; then res2..res5, each a residual stage of two 3x3
conv-BN-ReLU blocks, res3..res5 opening with a stride-2 conv. Default widths 16/32/64/128.
Every stride-2 conv is 3x3 with padding 1, so each halving gives ceil(n/2) and res_s is exactly
[B, C, ceil(H/s), ceil(W/s)].
"""

from __future__ import annotations

from torch import Tensor, nn

from vidseg.models.backbones.base import RES_NAMES, Backbone, norm2d


class ConvNormAct(nn.Sequential):
    """3x3 conv (no bias) -> BatchNorm (or frozen) -> ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, frozen_bn: bool):
        super().__init__(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), norm2d(cout, frozen_bn), nn.ReLU(inplace=True))


class TinyStage(nn.Module):
    """Input conv (stride 1 or 2, changes width) followed by a residual 3x3-3x3 block."""

    def __init__(self, cin: int, cout: int, stride: int, frozen_bn: bool):
        super().__init__()
        self.entry = ConvNormAct(cin, cout, stride, frozen_bn)
        self.conv1 = ConvNormAct(cout, cout, 1, frozen_bn)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), norm2d(cout, frozen_bn))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.entry(x)
        return self.act(x + self.conv2(self.conv1(x)))


class TinyCNN(Backbone):
    """4-stage residual CNN, ~0.5M parameters at the default widths.

    Args:
        channels: widths of res2..res5.
        frozen_bn: use `FrozenBatchNorm2d` everywhere (off by default: this net is trained from scratch).
    """

    def __init__(self, channels: tuple[int, int, int, int] = (16, 32, 64, 128), frozen_bn: bool = False):
        super().__init__()
        c2, c3, c4, c5 = channels
        self.stem = nn.Sequential(ConvNormAct(3, c2, 2, frozen_bn), ConvNormAct(c2, c2, 2, frozen_bn))
        self.res2 = TinyStage(c2, c2, 1, frozen_bn)
        self.res3 = TinyStage(c2, c3, 2, frozen_bn)
        self.res4 = TinyStage(c3, c4, 2, frozen_bn)
        self.res5 = TinyStage(c4, c5, 2, frozen_bn)
        self.out_channels = dict(zip(RES_NAMES, channels))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def stages(self) -> list[list[str]]:
        return [["stem"], ["res2"], ["res3"], ["res4"], ["res5"]]

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """images [B, 3, H, W] -> res2..res5 [B, C_l, ceil(H/s), ceil(W/s)]."""
        x = self.stem(images)
        out = {}
        for name in RES_NAMES:
            x = getattr(self, name)(x)
            out[name] = x
        return out
