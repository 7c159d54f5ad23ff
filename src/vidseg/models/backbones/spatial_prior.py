"""The convolutional spatial prior of ViT-Adapter: a small CNN giving ViT-width maps at strides 4, 8, 16, 32.

A plain ViT sees the image only through 14x14 or 16x16 patches; this stem keeps the detail below the patch
size. Parameter names are those of DVIS++ (`spm.stem`, `spm.conv2..4`, `spm.fc1..4`).
"""

from __future__ import annotations

from torch import Tensor, nn


def conv_bn_relu(cin: int, cout: int, stride: int) -> list[nn.Module]:
    """3x3 conv (no bias) + BatchNorm + ReLU, as a list to splice into an `nn.Sequential`."""
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SpatialPriorModule(nn.Module):
    """Convolutional stem giving ViT-width maps at strides 4, 8, 16, 32: [B, 3, H, W] -> c1..c4 [B, C, H/s, W/s]."""

    def __init__(self, inplanes: int, embed_dim: int):
        super().__init__()
        self.stem = nn.Sequential(
            *conv_bn_relu(3, inplanes, 2),
            *conv_bn_relu(inplanes, inplanes, 1),
            *conv_bn_relu(inplanes, inplanes, 1),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        self.conv2 = nn.Sequential(*conv_bn_relu(inplanes, 2 * inplanes, 2))
        self.conv3 = nn.Sequential(*conv_bn_relu(2 * inplanes, 4 * inplanes, 2))
        self.conv4 = nn.Sequential(*conv_bn_relu(4 * inplanes, 4 * inplanes, 2))
        self.fc1 = nn.Conv2d(inplanes, embed_dim, 1)
        self.fc2 = nn.Conv2d(2 * inplanes, embed_dim, 1)
        self.fc3 = nn.Conv2d(4 * inplanes, embed_dim, 1)
        self.fc4 = nn.Conv2d(4 * inplanes, embed_dim, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        c1 = self.stem(x)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        return self.fc1(c1), self.fc2(c2), self.fc3(c3), self.fc4(c4)
