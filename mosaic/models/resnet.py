"""CIFAR-style ResNet-18/34 (He et al. 2016) with BasicBlocks.

Differences from the ImageNet ResNet, as usual for 32x32 inputs: the stem is one 3x3 stride-1
convolution (no 7x7 stride-2 conv, no max-pool), so the four stages run at S, S/2, S/4, S/8.
Stage widths 64-128-256-512; a projection shortcut (1x1 conv + BN) wherever the width or the
resolution changes, identity elsewhere. Global average pooling makes any input size >= 8 work.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mosaic.models.base import Classifier
from mosaic.spec import ImageSpec


class BasicBlock(nn.Module):
    """relu(BN(conv3x3(relu(BN(conv3x3_stride(x))))) + shortcut(x)).

    (B, c_in, H, W) -> (B, c_out, H / stride, W / stride)
    """

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))  # (B, c_out, H/stride, W/stride)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetFeatures(nn.Module):
    """(B, C, S, S) -> (B, 512); ``blocks`` = number of BasicBlocks in each of the four stages."""

    def __init__(self, in_channels: int, blocks: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU()
        )
        stages, c_in = [], 64
        for width, stride, n in zip((64, 128, 256, 512), (1, 2, 2, 2), blocks):
            stage = [BasicBlock(c_in, width, stride)]
            stage += [BasicBlock(width, width, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*stage))
            c_in = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, 64, S, S)
        x = self.stages(x)  # (B, 512, S/8, S/8)
        return self.pool(x).flatten(1)  # (B, 512)


def resnet18(spec: ImageSpec) -> Classifier:
    """CIFAR ResNet-18: stages of 2-2-2-2 BasicBlocks; features (B, 512)."""
    return Classifier(spec, ResNetFeatures(spec.channels, (2, 2, 2, 2)), 512, "resnet18")


def resnet34(spec: ImageSpec) -> Classifier:
    """CIFAR ResNet-34: stages of 3-4-6-3 BasicBlocks; features (B, 512)."""
    return Classifier(spec, ResNetFeatures(spec.channels, (3, 4, 6, 3)), 512, "resnet34")
