"""Entropy-selected OOD subsets: the paper's † setting, which keeps the OOD images the teacher is
least sure about (highest prediction entropy), i.e. those that look least like any in-domain class.
"""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn as nn

from mosaic.data.batcher import iterate
from mosaic.data.imagedata import ImageData
from mosaic.losses import entropy
from mosaic.nnutil import eval_mode


def _per_image(h: torch.Tensor) -> torch.Tensor:
    """An image's entropy: (B,) as it is, or the mean over the pixels of a dense model's (B, H, W)."""
    return h if h.dim() == 1 else h.flatten(1).mean(dim=1)  # (B, H, W) -> (B,)


def entropy_subset(data: ImageData, model: nn.Module, n: int, batch_size: int = 512,
                   device: str | torch.device = "cpu") -> ImageData:
    """The ``n`` images of ``data`` with the highest prediction entropy under ``model``.

    ``model`` (already on ``device``) takes [0, 1] images of data's spec and returns logits, (B, K) or
    dense (B, K, H, W) (then an image scores its mean per-pixel entropy). It runs
    in eval mode under ``torch.no_grad`` (``nnutil.eval_mode``: its modes are restored). Ties go to the
    earlier image; the kept images stay in their original order.
    """
    if not 1 <= n <= len(data):
        raise ValueError(f"n must be between 1 and len(data) = {len(data)} for {data!r}, got {n}")
    with eval_mode(model), torch.no_grad():
        scores = torch.cat([_per_image(entropy(model(x))).cpu() for x, _ in iterate(data, batch_size, device)])  # (N,)
    top = torch.sort(scores, descending=True, stable=True).indices[:n]  # (n,) highest entropy first
    return replace(data.subset(top.sort().values), name=f"{data.name}+entropy")
