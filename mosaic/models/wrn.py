"""Wide ResNets WRN-d-k (Zagoruyko & Komodakis 2016), pre-activation blocks, no dropout.

Depth d = 6n + 4: a 3x3 stem conv to 16 channels, three groups of n blocks at widths 16k, 32k,
64k (strides 1, 2, 2), then BN -> ReLU -> global average pool. Each block is pre-activation
(He et al. 2016, "Identity mappings"): BN -> ReLU -> conv3x3 -> BN -> ReLU -> conv3x3, added to the
shortcut. Where the width or resolution changes, the shortcut is a 1x1 conv applied to the
already activated input, so the first BN -> ReLU is shared by both branches.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mosaic.models.base import Classifier
from mosaic.spec import ImageSpec


class PreActBlock(nn.Module):
    """(B, c_in, H, W) -> (B, c_out, H / stride, W / stride)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.bn1(x))  # pre-activation, (B, c_in, H, W)
        out = self.conv1(a)  # (B, c_out, H/stride, W/stride)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + (x if self.shortcut is None else self.shortcut(a))


class WideResNetFeatures(nn.Module):
    """(B, C, S, S) -> (B, 64 * widen)."""

    def __init__(self, in_channels: int, depth: int, widen: int) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4 (10, 16, 22, 28, 40, ...), got {depth}")
        n = (depth - 4) // 6
        self.stem = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        groups, c_in = [], 16
        for width, stride in zip((16 * widen, 32 * widen, 64 * widen), (1, 2, 2)):
            blocks = [PreActBlock(c_in, width, stride)]
            blocks += [PreActBlock(width, width, 1) for _ in range(n - 1)]
            groups.append(nn.Sequential(*blocks))
            c_in = width
        self.groups = nn.Sequential(*groups)
        self.bn = nn.BatchNorm2d(c_in)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, 16, S, S)
        x = self.groups(x)  # (B, 64k, S/4, S/4)
        x = F.relu(self.bn(x))
        return self.pool(x).flatten(1)  # (B, 64k)


def wide_resnet(spec: ImageSpec, depth: int, widen: int) -> Classifier:
    """WRN-depth-widen for ``spec``; features (B, 64 * widen)."""
    features = WideResNetFeatures(spec.channels, depth, widen)
    return Classifier(spec, features, 64 * widen, f"wrn{depth}_{widen}")


def wrn16_1(spec: ImageSpec) -> Classifier:
    """WRN-16-1: 2 blocks per group, widths 16-32-64."""
    return wide_resnet(spec, 16, 1)


def wrn16_2(spec: ImageSpec) -> Classifier:
    """WRN-16-2: 2 blocks per group, widths 32-64-128."""
    return wide_resnet(spec, 16, 2)


def wrn40_1(spec: ImageSpec) -> Classifier:
    """WRN-40-1: 6 blocks per group, widths 16-32-64."""
    return wide_resnet(spec, 40, 1)


def wrn40_2(spec: ImageSpec) -> Classifier:
    """WRN-40-2: 6 blocks per group, widths 32-64-128."""
    return wide_resnet(spec, 40, 2)
