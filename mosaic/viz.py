"""Pictures: image grids of samples and training curves from a run's history."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch


def image_grid(x: torch.Tensor, nrow: int = 8, pad: int = 1) -> "np.ndarray":  # noqa: F821
    """(B, C, H, W) images in [0, 1] → one (rows·(H+pad), nrow·(W+pad), 3) float array for imshow."""
    import numpy as np

    x = x.detach().float().clamp(0, 1).cpu()
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)  # (B, 3, H, W)
    b, c, h, w = x.shape
    rows = (b + nrow - 1) // nrow
    grid = torch.ones(rows * (h + pad) + pad, nrow * (w + pad) + pad, c)
    for i in range(b):
        r, k = divmod(i, nrow)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + k * (w + pad): pad + k * (w + pad) + w] = x[i].permute(1, 2, 0)
    return np.asarray(grid)


@torch.no_grad()
def sample(generator: torch.nn.Module, n: int, z_dim: int, device: str | torch.device = "cpu", seed: int = 0) -> torch.Tensor:
    """n synthetic images from a fixed noise seed, as the student sees them during training.

    The generator is run in train mode (batch-statistics BatchNorm, as in the game) on a copy, so the
    caller's generator and its running statistics are untouched.
    """
    import copy

    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, z_dim, generator=g).to(device)  # (n, z_dim)
    return copy.deepcopy(generator).train()(z).float().cpu()  # (n, C, H, W)


def save_samples(generator: torch.nn.Module, path: str | Path, z_dim: int, device: str | torch.device = "cpu",
                 n: int = 64, nrow: int = 8) -> None:
    """Write a PNG grid of n fixed-seed samples."""
    import matplotlib.pyplot as plt

    plt.imsave(Path(path), image_grid(sample(generator, n, z_dim, device), nrow=nrow))


def plot_history(history: Sequence[dict], keys: Sequence[str] = ("loss_s", "loss_g", "loss_d"), ax=None):
    """Loss curves (left axis) and student val accuracy (right axis) over steps."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(7, 3.5))[1]
    steps = [r["step"] for r in history]
    for k in keys:
        if any(k in r for r in history):
            ax.plot(steps, [r.get(k, float("nan")) for r in history], label=k, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    evals = [(r["step"], r["val_acc"]) for r in history if "val_acc" in r]
    if evals:
        ax2 = ax.twinx()
        ax2.plot(*zip(*evals), "k.-", label="student val acc (%)")
        ax2.set_ylabel("val acc (%)")
        ax2.legend(loc="lower right", fontsize=8)
    ax.legend(loc="upper right", fontsize=8)
    return ax


__all__ = ["image_grid", "sample", "save_samples", "plot_history"]
