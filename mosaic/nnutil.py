"""Small torch helpers shared by every layer (torch only, no other mosaic import)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode inside the block; on leaving, also on an exception, every submodule
    gets back its own previous train/eval flag (mixed modes included)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


__all__ = ["eval_mode"]
