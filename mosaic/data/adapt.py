"""The one rule that converts out-of-domain images to the teacher's input spec.

Given images in [0, 1] of shape (B, C, H, W) and a target ``ImageSpec``:

1. channels: RGB -> grey by ITU-R BT.601 luma, y = 0.299 R + 0.587 G + 0.114 B;
   grey -> RGB by repeating the one channel three times; equal counts are left alone;
2. size: when (H, W) != (spec.size, spec.size), the whole image is resized (not cropped; a
   non-square image is stretched) to spec.size x spec.size with bilinear, antialiased interpolation
   (``F.interpolate(..., mode="bilinear", antialias=True, align_corners=False)``).

Normalisation is not part of the rule: images stay in [0, 1] and each classifier normalises its own
input with its spec's mean/std. ``adapt`` applies the rule once, at load time, to a whole ImageData
and stores the result as uint8 again (rounded), so batching stays cheap.
"""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from mosaic.data.imagedata import ImageData
from mosaic.spec import ImageSpec

LUMA_601 = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights for R, G, B


def adapt_images(x: torch.Tensor, spec: ImageSpec) -> torch.Tensor:
    """Convert float images in [0, 1], (B, C, H, W), to (B, spec.channels, spec.size, spec.size)."""
    c = x.shape[1]
    if c == 3 and spec.channels == 1:
        weights = torch.tensor(LUMA_601, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        x = (x * weights).sum(dim=1, keepdim=True)  # (B, 3, H, W) -> (B, 1, H, W)
    elif c == 1 and spec.channels == 3:
        x = x.repeat(1, 3, 1, 1)  # (B, 1, H, W) -> (B, 3, H, W)
    elif c != spec.channels:
        raise ValueError(f"cannot adapt {c}-channel images to {spec.channels} channels (1 and 3 only)")
    if x.shape[-2:] != (spec.size, spec.size):
        x = F.interpolate(x, size=(spec.size, spec.size), mode="bilinear", antialias=True,
                          align_corners=False)  # (B, C, H, W) -> (B, C, size, size)
    return x.clamp(0.0, 1.0)


def adapt(data: ImageData, spec: ImageSpec, chunk: int = 1024) -> ImageData:
    """ImageData in the target spec: channels/size/mean/std of ``spec``, labels and classes kept.

    The result's ``spec.num_classes`` and ``task`` stay those of ``data`` (its labels are its own
    classes); segmentation masks are resized with the images, by nearest neighbour.
    """
    target = ImageSpec(spec.channels, spec.size, spec.mean, spec.std, data.spec.num_classes, data.spec.task)
    if data.spec.channels == spec.channels and data.spec.size == spec.size:
        return replace(data, spec=target)  # pixels unchanged
    labels = data.labels
    if labels is not None and labels.dim() == 3:
        labels = F.interpolate(labels[:, None].float(), size=(spec.size, spec.size), mode="nearest")
        labels = labels[:, 0].to(torch.uint8)  # (N, 1, S, S) -> (N, S, S)
    out = []
    for start in range(0, len(data), chunk):
        x = data.images[start:start + chunk].float().div(255)  # (b, C, H, W) in [0, 1]
        out.append(adapt_images(x, spec).mul(255).round().to(torch.uint8))  # (b, C', S, S)
    images = torch.cat(out) if out else data.images.new_zeros(0, spec.channels, spec.size, spec.size)
    return replace(data, images=images, labels=labels, spec=target)
