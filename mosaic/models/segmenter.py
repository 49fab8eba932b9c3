"""Segmenter: the one wrapper every named dense-prediction network returns, and the networks by name.

A segmenter owns its input normalisation, like a ``Classifier``: it takes images float in [0, 1] of
shape (B, C, S, S), normalises them with its ``ImageSpec``'s mean/std and returns per-pixel logits
(B, K, S, S), K = spec.num_classes.

- ``segnet_small`` / ``segnet_small_half``: a small U-Net-style encoder–decoder pair (teacher /
  student) for CPU runs on 64x64 scenes. Measured on the 2-core build machine (shared, 1 thread, one
  SGD step with batch 128 on fmnist_scenes): 4.6 s (segnet_small, 437k parameters) and 1.9 s
  (segnet_small_half, 110k); segnet_small_half reached 33.5% val mIoU after 300 steps of batch 32
  (about 100 s) and was still improving;
- ``deeplabv3_resnet50``, ``deeplabv3_mobilenet_v3_large``, ``lraspp_mobilenet_v3_large``,
  ``fcn_resnet50``: torchvision's builders, called with ``weights=None, weights_backbone=None`` (no
  download, random init) and ``num_classes`` from the spec; their dict output is unwrapped to
  ``["out"]``. They take 3 channels: 1-channel input is normalised with the spec's grey mean/std,
  then repeated to 3 channels (the network sees the same grey image on R, G and B).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mosaic.models.base import Frozen, init_weights
from mosaic.models.cnn import conv_bn_relu
from mosaic.models.pool import MaxPool2x2
from mosaic.spec import ImageSpec


class Segmenter(Frozen):
    """Normalise -> (grey to RGB for 3-channel networks) -> network -> logits (B, K, H, W).

    ``mean``/``std`` are non-persistent buffers (the spec is the single source of truth, the state
    dict holds weights only); ``freeze()`` pins eval mode and drops parameter gradients (a teacher).
    """

    def __init__(self, spec: ImageSpec, net: nn.Module, name: str, net_channels: int | None = None) -> None:
        super().__init__()
        if spec.num_classes < 2:
            raise ValueError(f"{name} is a segmenter: it needs a spec with num_classes >= 2, got {spec}")
        self.spec, self.name = spec, name
        self.net_channels = net_channels or spec.channels  # what the network's first layer takes
        if self.net_channels not in (spec.channels, 3):
            raise ValueError(f"{name} takes {self.net_channels} channels; images of {spec} cannot be fed to it")
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, -1, 1, 1), persistent=False)
        self.net = net
        self.frozen = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> logits (B, K, H, W)."""
        if x.dim() != 4 or x.shape[1] != self.spec.channels:
            raise ValueError(f"{self.name} expects images of shape (B, {self.spec.channels}, H, W), got {tuple(x.shape)}")
        x = (x - self.mean) / self.std  # (B, C, H, W) standardised
        if x.shape[1] != self.net_channels:
            x = x.expand(-1, self.net_channels, -1, -1)  # grey (B, 1, H, W) -> (B, 3, H, W)
        out = self.net(x)
        return out["out"] if isinstance(out, dict) else out  # torchvision: {"out": (B, K, H, W), ...}


# ----------------------------------------------------------------------------- the small pair

class EncoderDecoder(nn.Module):
    """A U-Net-style encoder–decoder, cheap enough for a CPU: 3x3 convolutions in the encoder, 1x1 fusions
    in the decoder (at full resolution a 3x3 decoder would cost as much as the whole encoder).

    encoder  (B, C, S, S) -> e1 (B, w1, S, S) -> e2 (B, w2, S/2, S/2) -> e3 (B, w3, S/4, S/4)
             -> e4 (B, w3, S/8, S/8)                       (receptive field of e4: 54 pixels)
    decoder  up(e4) + e3 -> (B, w3, S/4, S/4) -> up + e2 -> (B, w2, S/2, S/2) -> up + e1 -> (B, w1, S, S)
             each "up + skip" is a bilinear upsampling to the skip's size, a concatenation and a
             1x1 conv-BN-ReLU; then a 1x1 head -> (B, K, S, S).
    Any S >= 8 works (odd sizes too: each upsampling meets its skip's size).
    """

    def __init__(self, in_channels: int, num_classes: int, widths: tuple[int, int, int]) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.enc1 = nn.Sequential(*conv_bn_relu(in_channels, w1))
        self.enc2 = nn.Sequential(MaxPool2x2(), *conv_bn_relu(w1, w2))
        self.enc3 = nn.Sequential(MaxPool2x2(), *conv_bn_relu(w2, w3))
        self.enc4 = nn.Sequential(MaxPool2x2(), *conv_bn_relu(w3, w3), *conv_bn_relu(w3, w3))
        self.dec3 = fuse_1x1(w3 + w3, w3)
        self.dec2 = fuse_1x1(w3 + w2, w2)
        self.dec1 = fuse_1x1(w2 + w1, w1)
        self.head = nn.Conv2d(w1, num_classes, 1)
        init_weights(self)

    @staticmethod
    def _up(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Upsample x to skip's size and join them on channels: (B, a, h, w), (B, b, H, W) -> (B, a + b, H, W)."""
        return torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)  # (B, w1, S, S)
        e2 = self.enc2(e1)  # (B, w2, S/2, S/2)
        e3 = self.enc3(e2)  # (B, w3, S/4, S/4)
        e4 = self.enc4(e3)  # (B, w3, S/8, S/8)
        d3 = self.dec3(self._up(e4, e3))  # (B, w3, S/4, S/4)
        d2 = self.dec2(self._up(d3, e2))  # (B, w2, S/2, S/2)
        d1 = self.dec1(self._up(d2, e1))  # (B, w1, S, S)
        return self.head(d1)  # (B, K, S, S)


def fuse_1x1(c_in: int, c_out: int) -> nn.Sequential:
    """conv1x1 (no bias) -> BN -> ReLU: mixes an upsampled map with its skip, keeps H and W."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


def segnet_small(spec: ImageSpec) -> Segmenter:
    """Small encoder–decoder, widths 32-64-128 (the CPU teacher)."""
    return Segmenter(spec, EncoderDecoder(spec.channels, spec.num_classes, (32, 64, 128)), "segnet_small")


def segnet_small_half(spec: ImageSpec) -> Segmenter:
    """Half the widths of segnet_small, 16-32-64 (the CPU student)."""
    return Segmenter(spec, EncoderDecoder(spec.channels, spec.num_classes, (16, 32, 64)), "segnet_small_half")


# ----------------------------------------------------------------------------- torchvision's networks

def _torchvision(builder: str) -> Callable[[ImageSpec], Segmenter]:
    """A factory calling torchvision.models.segmentation.<builder> without any pretrained weights."""

    def factory(spec: ImageSpec) -> Segmenter:
        from torchvision.models import segmentation

        net = getattr(segmentation, builder)(weights=None, weights_backbone=None, num_classes=spec.num_classes)
        return Segmenter(spec, net, builder, net_channels=3)

    factory.__name__ = builder
    factory.__doc__ = f"torchvision's {builder}(weights=None, weights_backbone=None), K = spec.num_classes."
    return factory


deeplabv3_resnet50 = _torchvision("deeplabv3_resnet50")
deeplabv3_mobilenet_v3_large = _torchvision("deeplabv3_mobilenet_v3_large")
lraspp_mobilenet_v3_large = _torchvision("lraspp_mobilenet_v3_large")
fcn_resnet50 = _torchvision("fcn_resnet50")

SEGMENTER_FACTORIES: dict[str, Callable[[ImageSpec], Segmenter]] = {
    f.__name__: f for f in (segnet_small, segnet_small_half, deeplabv3_resnet50, deeplabv3_mobilenet_v3_large,
                            lraspp_mobilenet_v3_large, fcn_resnet50)
}

__all__ = ["Segmenter", "EncoderDecoder", "SEGMENTER_FACTORIES", "segnet_small", "segnet_small_half",
           "deeplabv3_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large", "fcn_resnet50"]
