"""VGG-11 with batch norm (Simonyan & Zisserman 2015, configuration "A"), CIFAR variant.

Eight conv3x3 -> BN -> ReLU layers, 64-M-128-M-256-256-M-512-512-M-512-512-M (M = 2x2 max-pool),
then global average pooling and the classifier's single linear layer 512 -> K (the CIFAR variant
used in KD papers drops the three 4096-wide fully connected layers of the ImageNet model).
Max-pools use ``ceil_mode`` so that small inputs survive all five of them
(8: 8-4-2-1-1-1; 28: 28-14-7-4-2-1; 32: 32-16-8-4-2-1; 96: 96-48-24-12-6-3).
"""
from __future__ import annotations

from torch import nn

from mosaic.models.base import Classifier
from mosaic.spec import ImageSpec

VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def vgg_features(in_channels: int, config: tuple[int | str, ...]) -> nn.Sequential:
    """(B, C, S, S) -> (B, last width); ``config`` lists conv widths and "M" for max-pools."""
    layers: list[nn.Module] = []
    c_in = in_channels
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(2, ceil_mode=True))  # (B, c, ceil(H/2), ceil(W/2))
        else:
            c_out = int(item)
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
            c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]  # (B, c_in)
    return nn.Sequential(*layers)


def vgg11_bn(spec: ImageSpec) -> Classifier:
    """VGG-11-BN for ``spec``; features (B, 512)."""
    return Classifier(spec, vgg_features(spec.channels, VGG11), 512, "vgg11_bn")
