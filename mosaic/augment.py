"""Differentiable augmentation of the patch discriminator's inputs (DiffAugment; Zhao et al., NeurIPS 2020).

A discriminator that sees only a few thousand real OOD images can memorise them and win its game by
detail the generator cannot match. DiffAugment shows D every image, real or synthetic, through the same
random, differentiable transform, in D's update and in the generator's patch term (``loss_local``), so D
cannot tell the two sets apart by the augmentation, and the generator's gradient flows through it. Only
the discriminator sees augmented images: the teacher and student terms read the generator's output as is.

Policies (``RunConfig.d_augment``, several joined by "+", applied in the order written; "none": off):
- ``translation``: each image shifts by up to 1/8 of its size in each direction (a whole number of pixels,
  drawn per image); what moves in from outside is 0, the black background of the library's [0, 1] images;
- ``cutout``: each image loses a square of half its size, centred on a pixel drawn per image (clipped at
  the border), set to 0.

Draws come from torch's global generator on the images' device (checkpointed, so resume stays exact);
"none" draws nothing. Under torchrun each rank draws the transforms of its own slice of the batch, so,
unlike the generator's latent codes (``game.sample_z``), they depend on the number of processes.
"""
from __future__ import annotations

import torch

from mosaic.config import D_AUGMENTS as POLICIES, d_augment_policies as parse


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """x (B, C, H, W) with image b shifted by (dy_b, dx_b), |dy| ≤ round(ratio·H), |dx| ≤ round(ratio·W): out[b, :, i, j] =
    x[b, :, i + dy_b, j + dx_b] where that pixel exists, else 0."""
    B, C, H, W = x.shape
    sh, sw = int(H * ratio + 0.5), int(W * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (B, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (B, 1, 1), device=x.device)
    rows = torch.arange(H, device=x.device).view(1, H, 1) + dy  # (B, H, 1) source row of each output row
    cols = torch.arange(W, device=x.device).view(1, 1, W) + dx  # (B, 1, W)
    inside = (rows >= 0) & (rows < H) & (cols >= 0) & (cols < W)  # (B, H, W)
    b = torch.arange(B, device=x.device).view(B, 1, 1)
    out = x.permute(0, 2, 3, 1)[b, rows.clamp(0, H - 1), cols.clamp(0, W - 1)]  # (B, H, W, C)
    return (out * inside.unsqueeze(-1).to(out.dtype)).permute(0, 3, 1, 2)  # (B, C, H, W)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """x (B, C, H, W) with, per image, the rows [cy − h//2, cy − h//2 + h) × cols [cx − w//2, cx − w//2 + w) set to 0,
    h = round(ratio·H), w = round(ratio·W), the centre (cy, cx) uniform over the pixels (the square clipped at the border)."""
    B, C, H, W = x.shape
    h, w = int(H * ratio + 0.5), int(W * ratio + 0.5)
    cy = torch.randint(0, H, (B, 1, 1), device=x.device)
    cx = torch.randint(0, W, (B, 1, 1), device=x.device)
    rows = torch.arange(H, device=x.device).view(1, H, 1) - (cy - h // 2)  # (B, H, 1) row offset into the square
    cols = torch.arange(W, device=x.device).view(1, 1, W) - (cx - w // 2)  # (B, 1, W)
    keep = ~((rows >= 0) & (rows < h) & (cols >= 0) & (cols < w))  # (B, H, W)
    return x * keep.unsqueeze(1).to(x.dtype)  # (B, C, H, W)


TRANSFORMS = {"translation": translation, "cutout": cutout}


def augment(x: torch.Tensor, policy: str) -> torch.Tensor:
    """x (B, C, H, W) through the transforms of ``policy`` (see the module docstring), differentiably; x itself when "none"."""
    for name in parse(policy):
        x = TRANSFORMS[name](x)
    return x


__all__ = ["POLICIES", "parse", "augment", "translation", "cutout"]
