"""ImageSpec: what a network expects to see (channels, size, normalisation, classes).

Every image tensor that moves between datasets, the generator, the discriminator and the
classifiers is a float tensor in [0, 1] of shape (B, channels, size, size). Classifiers normalise
their own input with the in-domain ``mean``/``std`` of their spec (see ``mosaic.models``), so the one
rule for OOD images is: convert them to the teacher's spec (``mosaic.data.adapt``), keep them in
[0, 1], and feed the same tensors to the discriminator and to the student.

``task`` says what the labels and the logits are: ``classification`` (a label per image, logits
(B, K)) or ``segmentation`` (a label per pixel, logits (B, K, H, W)).
"""
from __future__ import annotations

from dataclasses import dataclass

TASKS = ("classification", "segmentation")


@dataclass(frozen=True)
class ImageSpec:
    channels: int  # 1 (grey) or 3 (RGB)
    size: int  # images are size x size pixels
    mean: tuple[float, ...]  # per-channel mean of the in-domain train split, in [0, 1] units
    std: tuple[float, ...]  # per-channel std of the in-domain train split
    num_classes: int = 0  # 0 for unlabeled image sources
    task: str = "classification"  # "classification": a label per image; "segmentation": per pixel

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"ImageSpec.task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"ImageSpec.channels must be 1 or 3, got {self.channels}")
        if self.size < 4:
            raise ValueError(f"ImageSpec.size must be >= 4, got {self.size}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError("ImageSpec.mean and .std need one value per channel")

    def __str__(self) -> str:
        dense = ", per pixel" if self.task == "segmentation" else ""
        return f"{self.channels}x{self.size}x{self.size}, {self.num_classes} classes{dense}"
