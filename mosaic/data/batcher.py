"""Tensor-resident batching: ``Batcher`` for training (shuffled, endless, resumable) and ``iterate``
for evaluation (sequential, every sample once).

The images move to the device once, as uint8; each batch is gathered, augmented and turned into float
[0, 1] on the device. All randomness (epoch permutations, crop offsets, flips) is drawn from the
batcher's own CPU ``torch.Generator``, so the batches are the same on CPU and GPU and do not depend on
torch's global RNG; ``state_dict`` captures it so a restored batcher continues exactly.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

from mosaic.data.imagedata import ImageData
from mosaic.losses import IGNORE_INDEX

Batch = tuple[torch.Tensor, torch.Tensor | None]  # x float (B, C, H, W) in [0, 1], y long (B,) or (B, H, W), or None


class Batcher:
    """Endless shuffled batches of ``data``: ``x, y = next(batcher)``.

    Each epoch is a fresh permutation; the last partial batch of an epoch is dropped. With
    ``augment=True``: random crop with zero padding ``max(1, size // 8)`` and, when ``data.hflip``,
    a random horizontal flip; segmentation masks get the same crop and flip (padding: void, 255).
    """

    def __init__(self, data: ImageData, batch_size: int, seed: int, augment: bool = False,
                 device: str | torch.device = "cpu") -> None:
        if not 1 <= batch_size <= len(data):
            raise ValueError(f"batch_size must be between 1 and len(data) = {len(data)} for {data!r}, "
                             f"got {batch_size}")
        self.data = data
        self.batch_size = batch_size
        self.augment = augment
        self.device = torch.device(device)
        self.pad = max(1, data.spec.size // 8)
        self.images = data.images.to(self.device)  # uint8 (N, C, H, W), resident
        self.labels = None if data.labels is None else data.labels.to(self.device)
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch = 0
        self.position = 0  # next unread place in the permutation
        self.permutation = torch.randperm(len(data), generator=self.generator)

    def __iter__(self) -> Batcher:
        return self

    def __next__(self) -> Batch:
        if self.position + self.batch_size > len(self.data):  # new epoch, partial batch dropped
            self.epoch += 1
            self.position = 0
            self.permutation = torch.randperm(len(self.data), generator=self.generator)
        index = self.permutation[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        index = index.to(self.device)
        x = self.images[index]  # uint8 (B, C, H, W)
        y = None if self.labels is None else self.labels[index]  # (B,) or uint8 masks (B, H, W)
        if self.augment:
            x, y = self._crop_and_flip(x, y)
        return x.float().div_(255), _long(y)

    def _crop_and_flip(self, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Random crop of the zero-padded batch (and flips), as one gather: (B, C, H, W) -> same.

        Segmentation masks y (B, H, W) get the same crop and flip, padded with the void label."""
        b, c, h, w = x.shape
        p = self.pad
        dy = torch.randint(0, 2 * p + 1, (b, 1), generator=self.generator)
        dx = torch.randint(0, 2 * p + 1, (b, 1), generator=self.generator)
        rows = dy + torch.arange(h)  # (B, H) rows of the padded image
        cols = dx + torch.arange(w)  # (B, W)
        if self.data.hflip:
            flip = torch.rand(b, 1, generator=self.generator) < 0.5
            cols = torch.where(flip, cols.flip(1), cols)
        padded = F.pad(x, (p, p, p, p))  # (B, C, H + 2p, W + 2p), zeros around
        rows, cols = rows.to(x.device), cols.to(x.device)
        bi = torch.arange(b, device=x.device).view(b, 1, 1, 1)
        ci = torch.arange(c, device=x.device).view(1, c, 1, 1)
        x = padded[bi, ci, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]  # (B, C, H, W)
        if y is not None and y.dim() == 3:  # masks follow the pixels; the padding is void
            padded_y = F.pad(y, (p, p, p, p), value=IGNORE_INDEX)  # (B, H + 2p, W + 2p)
            y = padded_y[bi.view(b, 1, 1), rows.view(b, h, 1), cols.view(b, 1, w)]  # (B, H, W)
        return x, y

    def state_dict(self) -> dict:
        """Everything needed to continue with exactly the same batches."""
        return {"generator": self.generator.get_state(), "permutation": self.permutation.clone(),
                "position": self.position, "epoch": self.epoch, "batch_size": self.batch_size,
                "n": len(self.data)}

    def load_state_dict(self, state: dict) -> None:
        if state["n"] != len(self.data) or state["batch_size"] != self.batch_size:
            raise ValueError(f"state is for {state['n']} images in batches of {state['batch_size']}, "
                             f"this batcher has {len(self.data)} in batches of {self.batch_size}")
        self.generator.set_state(state["generator"])
        self.permutation = state["permutation"].clone()
        self.position = state["position"]
        self.epoch = state["epoch"]

    def __repr__(self) -> str:
        return (f"Batcher({self.data!r}, batch_size={self.batch_size}, augment={self.augment}, "
                f"device={self.device})")


def iterate(data: ImageData, batch_size: int, device: str | torch.device = "cpu") -> Iterator[Batch]:
    """Every sample once, in order, in batches (the last one may be smaller): for evaluation."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(data), batch_size):
        x = data.images[start:start + batch_size].to(device).float().div_(255)  # (B, C, H, W)
        y = None if data.labels is None else data.labels[start:start + batch_size].to(device)
        yield x, _long(y)


def _long(y: torch.Tensor | None) -> torch.Tensor | None:
    """Labels as the losses take them: long (B,) or, for uint8 segmentation masks, long (B, H, W)."""
    return None if y is None else y.long()
