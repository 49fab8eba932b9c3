"""Segmentation datasets read from files: ``voc``, ``cityscapes``, ``nyuv2``.

Each loader reads a whole source split (image files + label maps) and returns it as uint8 tensors
of one square size, so the rest of the library (``ImageData``, ``Batcher``, ``adapt``) treats them
like any other dataset: the image is resized whole (a non-square image is stretched, as in
``adapt``) with PIL's antialiased bilinear filter, its label map with nearest neighbour (labels are
never blended). Void pixels carry 255 (``losses.IGNORE_INDEX``).

- ``voc``: torchvision ``VOCSegmentation`` (2012) under ``{root}/VOCdevkit/VOC2012``; 21 classes
  (background + 20), its boundary pixels are already 255. Source train = ``train``, source test = ``val``.
- ``cityscapes``: torchvision ``Cityscapes`` (fine, semantic) under ``{root}/cityscapes`` (holding
  ``leftImg8bit/`` and ``gtFine/``); label ids are mapped to the 19 train ids, the rest to 255.
  Source train = ``train``, source test = ``val`` (test labels are not public).
- ``nyuv2``: the common 13-class layout, read from a folder (no download exists):
  ``{root}/NYUv2/image/{train,test}/NAME.png`` (RGB) and ``{root}/NYUv2/seg13/{train,test}/NAME.png``
  (8-bit label maps: 0 = unlabeled, 1..13 = the classes in ``NYUV2_CLASSES`` order), paired by NAME.
  Stored as 0..12 with unlabeled -> 255. Usually 795 train / 654 test images.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from mosaic.data.imagedata import DatasetNotFoundError
from mosaic.losses import IGNORE_INDEX

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
NYUV2_CLASSES = ("bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "picture", "sofa", "table",
                 "tv", "wall", "window")
DENSE_SIZE = 128  # side of the stored square images and masks


def resize_pair(image: Image.Image, mask: Image.Image, size: int) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image and its label map as uint8 (3, size, size) and (size, size)."""
    rgb = image.convert("RGB").resize((size, size), Image.BILINEAR)  # antialiased when shrinking
    labels = mask.resize((size, size), Image.NEAREST)
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1), np.asarray(labels, dtype=np.uint8)


def stack_pairs(pairs: Sequence[tuple[Path | str, Path | str]], size: int,
                relabel: Callable[[np.ndarray], np.ndarray] = lambda m: m) -> tuple[torch.Tensor, torch.Tensor]:
    """Read (image file, label file) pairs: images uint8 (N, 3, size, size), masks uint8 (N, size, size)."""
    images, masks = [], []
    for image_file, mask_file in pairs:
        with Image.open(image_file) as image, Image.open(mask_file) as mask:
            x, y = resize_pair(image, mask, size)
        images.append(x)
        masks.append(relabel(y))
    if not images:
        raise DatasetNotFoundError("no image/label pairs found")
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks))


def voc_pairs(root: Path, train: bool, download: bool) -> list[tuple[str, str]]:
    """File pairs of VOC 2012 segmentation ``train`` (or ``val``) from torchvision (raises when missing)."""
    from torchvision import datasets

    ds = datasets.VOCSegmentation(str(root), year="2012", image_set="train" if train else "val", download=download)
    return list(zip(ds.images, ds.masks))


def cityscapes_pairs(root: Path, train: bool) -> list[tuple[str, str]]:
    """File pairs of Cityscapes fine ``train`` (or ``val``) from torchvision (raises when missing)."""
    from torchvision import datasets

    ds = datasets.Cityscapes(str(root / "cityscapes"), split="train" if train else "val", mode="fine",
                             target_type="semantic")
    return [(image, targets[0]) for image, targets in zip(ds.images, ds.targets)]


def cityscapes_relabel() -> Callable[[np.ndarray], np.ndarray]:
    """Cityscapes label id -> train id (0..18), everything else -> 255, from torchvision's class table."""
    from torchvision import datasets

    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for c in datasets.Cityscapes.classes:
        if 0 <= c.id < 256 and c.train_id not in (255, -1):
            table[c.id] = c.train_id
    return lambda m: table[m]


def cityscapes_classes() -> tuple[str, ...]:
    from torchvision import datasets

    named = sorted((c.train_id, c.name) for c in datasets.Cityscapes.classes if c.train_id not in (255, -1))
    return tuple(name for _, name in named)


def nyuv2_pairs(root: Path, train: bool) -> list[tuple[Path, Path]]:
    """File pairs of the NYUv2 13-class folder layout (module docstring); missing files raise."""
    split = "train" if train else "test"
    image_dir, label_dir = root / "NYUv2" / "image" / split, root / "NYUv2" / "seg13" / split
    if not image_dir.is_dir() or not label_dir.is_dir():
        raise DatasetNotFoundError(f"{image_dir} or {label_dir} is not a folder")
    images = sorted(image_dir.glob("*.png"))
    missing = [p.name for p in images if not (label_dir / p.name).is_file()]
    if not images or missing:
        raise DatasetNotFoundError(f"{image_dir} holds no .png images" if not images else
                                   f"{len(missing)} images of {image_dir} have no label map in {label_dir} "
                                   f"(first: {missing[0]})")
    return [(p, label_dir / p.name) for p in images]


def nyuv2_relabel(m: np.ndarray) -> np.ndarray:
    """NYUv2-13 label maps: 0 (unlabeled) -> 255, 1..13 -> 0..12; anything above 13 is refused."""
    if m.max(initial=0) > len(NYUV2_CLASSES):
        raise ValueError(f"NYUv2 seg13 label maps hold 0..13, found {int(m.max())}; is this the 13-class layout?")
    return np.where(m == 0, IGNORE_INDEX, m.astype(np.int64) - 1).astype(np.uint8)


__all__ = ["VOC_CLASSES", "NYUV2_CLASSES", "DENSE_SIZE", "resize_pair", "stack_pairs", "voc_pairs",
           "cityscapes_pairs", "cityscapes_relabel", "cityscapes_classes", "nyuv2_pairs", "nyuv2_relabel"]
