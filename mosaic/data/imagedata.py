"""ImageData: a whole image set held in memory as one uint8 tensor, plus what describes it.

Every loader in ``mosaic.data`` returns an ``ImageData``. Images stay uint8 on the CPU until a
``Batcher`` (or ``iterate``) turns a batch into float [0, 1] tensors, so even 70,000 32x32 RGB
images cost only ~200 MB.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from mosaic.spec import ImageSpec


class DatasetNotFoundError(FileNotFoundError):
    """The files of a dataset are missing; the message says where we looked and how to get them."""


@dataclass(eq=False)
class ImageData:
    name: str  # registry name ("cifar10", "folder:/photos", ...)
    split: str  # "train", "val" or "test"
    images: torch.Tensor  # uint8 (N, C, H, W) on the CPU
    labels: torch.Tensor | None  # long (N,); uint8 masks (N, H, W) for segmentation (255 = void); None: unlabeled
    spec: ImageSpec  # channels, size, train-split mean/std, number of classes
    classes: tuple[str, ...]  # class names, () for unlabeled sources
    hflip: bool  # True when a horizontal flip is a valid augmentation (natural images)

    def __post_init__(self) -> None:
        x = self.images
        if x.dtype != torch.uint8 or x.dim() != 4:
            raise ValueError(f"ImageData.images must be uint8 (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
        if x.shape[1] != self.spec.channels or x.shape[2] != self.spec.size or x.shape[3] != self.spec.size:
            raise ValueError(f"ImageData.images {tuple(x.shape[1:])} do not match spec {self.spec}")
        if self.labels is not None and self.spec.task == "segmentation":
            if self.labels.dtype != torch.uint8 or self.labels.shape != (x.shape[0], *x.shape[2:]):
                raise ValueError(f"segmentation ImageData.labels must be uint8 masks {(x.shape[0], *x.shape[2:])}, "
                                 f"got {self.labels.dtype} {tuple(self.labels.shape)}")
        elif self.labels is not None:
            if self.labels.dtype != torch.long or self.labels.shape != (x.shape[0],):
                raise ValueError(f"ImageData.labels must be long ({x.shape[0]},), "
                                 f"got {self.labels.dtype} {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, index: torch.Tensor) -> ImageData:
        """The images (and labels) at ``index`` (a long tensor of positions), in that order."""
        index = torch.as_tensor(index, dtype=torch.long)
        labels = None if self.labels is None else self.labels[index]
        return replace(self, images=self.images[index], labels=labels)

    def __repr__(self) -> str:
        _, c, h, w = self.images.shape
        what = f"{self.spec.num_classes} classes" if self.labels is not None else "unlabeled"
        what += ", masks" if self.labels is not None and self.spec.task == "segmentation" else ""
        return f"ImageData({self.name}/{self.split}: {len(self)} x {c}x{h}x{w}, {what})"
