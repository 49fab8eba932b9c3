"""LeNet-5 (LeCun et al. 1998) and the half-width LeNet-5 student of DAFL (Chen et al. 2019).

Layout: conv5x5 -> ReLU -> max-pool 2 -> conv5x5 -> ReLU -> max-pool 2 -> conv5x5 to 120 channels
over a 5x5 map (a fully connected layer in disguise) -> ReLU -> linear 120 -> 84 -> ReLU, then the
classifier's linear head 84 -> K. ``lenet5_half`` halves every width: 3, 8, 60, 42.

Any input size >= 8 works: the first two convolutions use "same" padding and an adaptive average
pool brings the map to the 5x5 that the third convolution expects (28x28 input: 7x7 -> 5x5;
32x32: 8x8 -> 5x5). The original instead feeds 32x32 images without padding (32 -> 28 -> 14 ->
10 -> 5); the parameter count is the same either way (61,706 for 1 channel, 10 classes).

Pooling runs before its ReLU: max-pool and ReLU commute (ReLU is monotone), values and gradients
are the same as ReLU-then-pool (tests/test_models.py checks both bit for bit), and the ReLU touches
a quarter of the elements. The state dict keys are those of the usual order (ReLU and pool hold no
weights, the convolutions keep their indices).
"""
from __future__ import annotations

from torch import nn

from mosaic.models.base import Classifier
from mosaic.models.pool import MaxPool2x2
from mosaic.spec import ImageSpec


def lenet_features(in_channels: int, widths: tuple[int, int, int, int]) -> nn.Sequential:
    """(B, C, S, S) -> (B, widths[3]); widths = (conv1, conv2, conv3, fc)."""
    c1, c2, c3, fc = widths
    return nn.Sequential(
        nn.Conv2d(in_channels, c1, 5, padding=2), MaxPool2x2(), nn.ReLU(),  # (B, c1, S/2, S/2)
        nn.Conv2d(c1, c2, 5, padding=2), MaxPool2x2(), nn.ReLU(),  # (B, c2, S/4, S/4)
        nn.AdaptiveAvgPool2d(5),  # (B, c2, 5, 5)
        nn.Conv2d(c2, c3, 5), nn.ReLU(),  # (B, c3, 1, 1)
        nn.Flatten(),  # (B, c3)
        nn.Linear(c3, fc), nn.ReLU(),  # (B, fc)
    )


def lenet5(spec: ImageSpec) -> Classifier:
    """LeNet-5: widths 6, 16, 120, 84; features (B, 84)."""
    return Classifier(spec, lenet_features(spec.channels, (6, 16, 120, 84)), 84, "lenet5")


def lenet5_half(spec: ImageSpec) -> Classifier:
    """LeNet-5 with half the channels (DAFL's MNIST student): widths 3, 8, 60, 42; (B, 42)."""
    return Classifier(spec, lenet_features(spec.channels, (3, 8, 60, 42)), 42, "lenet5_half")
