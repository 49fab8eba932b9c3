"""2x2 max-pooling, stride 2, with a faster no-gradient path: the numbers of ``nn.MaxPool2d(2)``.

Why: on the CPU, PyTorch's max-pool kernel always tracks argmax indices, and in channels_last it
vectorises across channels, so it is slow on the small, few-channel maps of LeNet-style networks
(3-6 channels at 28x28). When no gradient is needed (a frozen teacher's forward, evaluation), the
maximum of the four strided views of the 2x2 windows gives the same values (max is exact), about
5x faster at 28x28 and 1.5-2x at 14x14 on this project's CPU (benchmarks/pool_ab.py measures it).
When a gradient is needed, ``F.max_pool2d`` runs as usual: a hand-written backward that reproduces
its tie-breaking measured no faster than PyTorch's own on the CPU, so gradients are PyTorch's,
bit for bit.

Odd sizes drop the last row/column, like ``ceil_mode=False``; NaNs propagate, as in max_pool2d.
``with fast_path(False):`` switches the no-gradient path off (always ``F.max_pool2d``) in that block,
for A/B measurements; the switch is a context variable, so other threads keep their own.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

_FAST: ContextVar[bool] = ContextVar("mosaic_pool_fast_path", default=True)


@contextmanager
def fast_path(enabled: bool) -> Iterator[None]:
    """Inside the block, ``max_pool2x2`` uses the strided-view maximum when no gradient is needed
    (``enabled``, the default outside any block) or always ``F.max_pool2d`` (not ``enabled``)."""
    token = _FAST.set(enabled)
    try:
        yield
    finally:
        _FAST.reset(token)


def max_pool2x2(x: torch.Tensor) -> torch.Tensor:
    """(…, H, W) -> (…, H//2, W//2): the values (and gradients) of ``F.max_pool2d(x, 2)``."""
    if not _FAST.get() or (x.requires_grad and torch.is_grad_enabled()):
        return F.max_pool2d(x, 2)
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    top = torch.maximum(x[..., 0:h:2, 0:w:2], x[..., 0:h:2, 1:w:2])  # (…, H//2, W//2)
    bottom = torch.maximum(x[..., 1:h:2, 0:w:2], x[..., 1:h:2, 1:w:2])
    return torch.maximum(top, bottom)


class MaxPool2x2(nn.Module):
    """Drop-in for ``nn.MaxPool2d(2)`` (no parameters, no state); see the module docstring."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool2x2(x)

    def extra_repr(self) -> str:
        return "kernel_size=2, stride=2"
