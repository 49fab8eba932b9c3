"""Classifier: the one wrapper every named architecture returns.

A classifier owns its input normalisation. It takes images as they move through the library,
float in [0, 1] with shape (B, C, S, S), normalises them with the mean/std of its ``ImageSpec``,
runs an architecture-specific ``features`` module down to a (B, D) vector, and a linear ``head``
maps that to (B, K) logits. Every architecture module (lenet, cnn, resnet, wrn, vgg) only builds a
``features`` module and says how wide its output is.
"""
from __future__ import annotations

import torch
from torch import nn

from mosaic.spec import ImageSpec


class Frozen(nn.Module):
    """A network that can be frozen once (a teacher): ``freeze()`` pins eval mode and drops parameter
    gradients; ``.train()`` from a parent cannot flip it back. Subclasses set ``self.frozen = False``."""

    frozen: bool

    def freeze(self):
        """Eval mode for good and no parameter gradients (a teacher, frozen once where it is built)."""
        self.frozen = True
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True):
        """nn.Module.train, except that a frozen network stays in eval mode (parents cannot flip it)."""
        return super().train(mode and not self.frozen)


class Classifier(Frozen):
    """Normalise -> features -> linear head.

    forward(x):          x (B, C, S, S) in [0, 1]  ->  logits (B, K),     K = spec.num_classes
    forward_features(x): x (B, C, S, S) in [0, 1]  ->  features (B, D),   D = feature_dim

    ``mean``/``std`` are non-persistent buffers of shape (1, C, 1, 1): they follow ``.to(device)``
    but stay out of the state dict, so the spec (saved with the run config) is the single source
    of truth for normalisation and a state dict holds weights only.
    """

    def __init__(self, spec: ImageSpec, features: nn.Module, feature_dim: int, name: str) -> None:
        super().__init__()
        if spec.num_classes < 2:
            raise ValueError(
                f"{name} is a classifier: it needs a spec with num_classes >= 2, got "
                f"num_classes={spec.num_classes} ({spec})"
            )
        self.spec = spec
        self.name = name
        self.feature_dim = feature_dim
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, -1, 1, 1), persistent=False)
        self.features = features
        self.head = nn.Linear(feature_dim, spec.num_classes)
        self.frozen = False  # a frozen classifier (a teacher) stays in eval mode: .train() cannot flip it back
        init_weights(self)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> (B, C, H, W) standardised with the spec's mean/std."""
        if x.dim() != 4 or x.shape[1] != self.spec.channels:
            raise ValueError(
                f"{self.name} expects images of shape (B, {self.spec.channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        return (x - self.mean) / self.std

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) in [0, 1] -> penultimate features (B, D)."""
        return self.features(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) in [0, 1] -> logits (B, K)."""
        return self.head(self.forward_features(x))


def init_weights(model: nn.Module) -> None:
    """He-normal convolutions (fan_out, ReLU gain), zero conv biases, BatchNorm at (1, 0).

    Linear layers keep PyTorch's default initialisation.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def count_parameters(model: nn.Module) -> int:
    """Number of scalars in all parameters (trainable or not); buffers are not counted."""
    return sum(p.numel() for p in model.parameters())


def describe(model: nn.Module) -> str:
    """One line: name, input spec where known, parameter count.

    >>> describe(resnet18(ImageSpec(3, 32, (0.5,) * 3, (0.25,) * 3, 100)))
    'resnet18 (3x32x32, 100 classes): 11,220,132 parameters'
    """
    name = getattr(model, "name", type(model).__name__)
    spec = getattr(model, "spec", None)
    where = f" ({spec})" if spec is not None else ""
    return f"{name}{where}: {count_parameters(model):,} parameters"
