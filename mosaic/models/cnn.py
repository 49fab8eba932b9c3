"""Small, fast CNNs for CPU experiments and tests.

Three conv3x3-BN-ReLU blocks, max-pool 2 after the first two, global average pool:
``cnn`` has widths 32-64-128 (about 95k parameters at 3 channels / 10 classes), ``cnn_half``
halves every width, 16-32-64 (about 24k). Any input size >= 4 works.
"""
from __future__ import annotations

from torch import nn

from mosaic.models.base import Classifier
from mosaic.models.pool import MaxPool2x2
from mosaic.spec import ImageSpec


def conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    """conv3x3 (no bias, BN follows) -> BN -> ReLU; keeps H and W."""
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def cnn_features(in_channels: int, widths: tuple[int, int, int]) -> nn.Sequential:
    """(B, C, S, S) -> (B, widths[2])."""
    w1, w2, w3 = widths
    return nn.Sequential(
        *conv_bn_relu(in_channels, w1), MaxPool2x2(),  # (B, w1, S/2, S/2)
        *conv_bn_relu(w1, w2), MaxPool2x2(),  # (B, w2, S/4, S/4)
        *conv_bn_relu(w2, w3),  # (B, w3, S/4, S/4)
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),  # (B, w3)
    )


def cnn(spec: ImageSpec) -> Classifier:
    """Small CNN, widths 32-64-128; features (B, 128)."""
    return Classifier(spec, cnn_features(spec.channels, (32, 64, 128)), 128, "cnn")


def cnn_half(spec: ImageSpec) -> Classifier:
    """Small CNN with half the channels, widths 16-32-64; features (B, 64)."""
    return Classifier(spec, cnn_features(spec.channels, (16, 32, 64)), 64, "cnn_half")
