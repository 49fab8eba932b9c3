"""Small torch helpers shared by every layer (torch only, no other mosaic import)."""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
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


@contextmanager
def num_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` inside the block (0: left as it is), restored on leaving.

    The count changes results, not only speed: float reductions are split differently, so a run (and a
    teacher) trained at 1 thread and at 2 differ. ``RunConfig.threads`` is therefore a results field.
    """
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cosine_schedule(optimizer: torch.optim.Optimizer, total: int, warmup: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """lr · ½(1 + cos(π·min(i, total)/total)) at step i: cosine from the optimiser's lr to 0 over ``total`` steps;
    with ``warmup`` > 0 also times min(1, (i + 1)/warmup), a linear rise over the first ``warmup`` steps.

    A closed form on purpose: torch's CosineAnnealingLR computes the same curve recursively and differs
    in the last bits (up to 2e-16 over 2,000 steps), which would move every stored number.
    """
    def cosine(i: int) -> float:
        return 0.5 * (1 + math.cos(math.pi * min(i, total) / total))

    if not warmup:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: min(1.0, (i + 1) / warmup) * cosine(i))


__all__ = ["eval_mode", "num_threads", "cosine_schedule"]
