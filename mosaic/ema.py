"""An exponential moving average of the student's weights (``RunConfig.ema_s``).

The student distills on a moving target: the generator changes every iteration, so the last student is
one point of a noisy path (its val accuracy at a run's four evaluations can move 5 points up and down).
An EMA of its weights averages that path: after game iteration n,

    ema <- d_n * ema + (1 - d_n) * student,   d_n = min(ema_s, (1 + n) / (10 + n))

over every floating-point entry of the state dict (weights and BatchNorm running statistics; integer
buffers are copied). The ramp d_n lets a short run forget the initial weights (d_1 = 0.18). The EMA
plays no part in the game (the generator and the teacher meet the trained student; no random draw
changes), so a run with ``ema_s > 0`` trains exactly as one without and reports both: the EMA as the
run's student, the trained one as ``student_acc_live`` / ``val_acc_live``. Polyak averaging; the paper
does not use it (``ema_s=0``).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn


def ema_copy(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` (same weights, buffers and memory format) to hold its average."""
    ema = copy.deepcopy(model)
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema


def ema_decay(decay: float, n: int) -> float:
    """The decay used after update n (1-based): ``decay``, ramped up from (1 + n) / (10 + n) early in a run."""
    return min(decay, (1 + n) / (10 + n))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float, n: int) -> None:
    """Move ``ema`` towards ``model`` (same architecture) after update n: floats interpolate, integers copy."""
    d = ema_decay(decay, n)
    target = model.state_dict()
    for name, avg in ema.state_dict().items():
        new = target[name].detach()
        if avg.is_floating_point():
            avg.lerp_(new.to(avg.dtype), 1.0 - d)
        else:
            avg.copy_(new)


__all__ = ["ema_copy", "ema_decay", "ema_update"]
