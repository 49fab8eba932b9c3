"""``folder:PATH``: an unlabeled out-of-domain image set cut from any folder of photos.

Every image file under PATH (recursively; extensions in ``IMAGE_EXTENSIONS``, any case), sorted by
relative path, is converted to RGB and cut into ``crops_per_image`` random-resized square crops of
``image_size`` pixels, so that even ten holiday photos give a few thousand varied OOD images:

- crop side = sqrt(a) * (shorter side), a ~ U(0.2, 1.0), at a uniformly random position;
- the crop is resized to image_size x image_size with PIL's antialiased bilinear filter;
- all random numbers come from ``numpy.random.default_rng(seed)`` (seed 0): same folder, same crops.

``crops_per_image=None`` means max(1, ceil(5000 / n_images)) capped at 256. Files that cannot be
decoded are skipped and counted in one warning; 16-bit greys are scaled by their bit depth (``to_rgb``). Only split ``train`` exists.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mosaic.data.imagedata import DatasetNotFoundError, ImageData
from mosaic.spec import ImageSpec

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_AREA = (0.2, 1.0)  # crop area as a fraction of the shorter side's square
AUTO_TOTAL_CROPS = 5000  # crops_per_image=None aims at this many crops in all ...
AUTO_MAX_CROPS_PER_IMAGE = 256  # ... with at most this many per image


def list_images(path: Path) -> list[Path]:
    """Image files under ``path`` (recursively), sorted by relative path."""
    files = (p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    return sorted(files, key=lambda p: p.relative_to(path).as_posix())


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB with 8 bits per channel. 16-bit and 32-bit integer greys (PIL modes ``I;16*``, ``I``) are
    scaled by their bit depth (65535 -> 255), where PIL's own conversion would clip them to white;
    float images (mode ``F``) are refused."""
    if image.mode == "F":
        raise ValueError("floating-point image (mode F) is not supported; save it as 8- or 16-bit")
    if image.mode.startswith("I"):
        grey = np.asarray(image).astype(np.float64)  # (H, W)
        depth = 65535.0 if image.mode.startswith("I;16") or grey.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(np.rint(grey * (255.0 / depth)), 0, 255).astype(np.uint8), mode="L")
    return image.convert("RGB")


def random_crops(image: Image.Image, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random-resized square crops of an RGB image: uint8 (n, size, size, 3)."""
    w, h = image.size
    short = min(w, h)
    crops = []
    for _ in range(n):
        side = max(1, round(short * math.sqrt(rng.uniform(*CROP_AREA))))
        x0 = int(rng.integers(0, w - side + 1))
        y0 = int(rng.integers(0, h - side + 1))
        crop = image.resize((size, size), Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side))
        crops.append(np.asarray(crop, dtype=np.uint8))
    return np.stack(crops)


def load_folder(path: str | Path, split: str = "train", image_size: int = 32,
                crops_per_image: int | None = None, max_images: int | None = None,
                seed: int = 0) -> ImageData:
    """Random crops of every image under ``path`` as unlabeled uint8 ImageData (3, image_size²).

    ``max_images`` keeps a seeded random choice of that many files (in sorted order).
    """
    name = f"folder:{path}"
    if split != "train":
        raise ValueError(f"{name}: folder sources have only split 'train', got {split!r}")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(f"{name}: {root} is not a directory; give folder:PATH with PATH a "
                                   f"folder of image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    files = list_images(root)
    if not files:
        raise DatasetNotFoundError(f"{name}: no image files under {root} (looked recursively for "
                                   f"{', '.join(sorted(IMAGE_EXTENSIONS))}, any case)")
    rng = np.random.default_rng(seed)
    if max_images is not None and max_images < len(files):
        if max_images < 1:
            raise ValueError(f"{name}: max_images must be >= 1, got {max_images}")
        files = [files[i] for i in sorted(rng.choice(len(files), size=max_images, replace=False))]
    if crops_per_image is None:
        crops_per_image = min(AUTO_MAX_CROPS_PER_IMAGE, max(1, math.ceil(AUTO_TOTAL_CROPS / len(files))))
    if crops_per_image < 1:
        raise ValueError(f"{name}: crops_per_image must be >= 1, got {crops_per_image}")

    crops, skipped = [], []
    for file in files:
        try:
            with Image.open(file) as image:
                image.draft("RGB", (4 * image_size, 4 * image_size))  # fast JPEG decode at reduced size
                crops.append(random_crops(to_rgb(image), crops_per_image, image_size, rng))
        except (OSError, ValueError, Image.DecompressionBombError):
            skipped.append(file)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable files under {root} "
                      f"(first: {skipped[0].relative_to(root)})", stacklevel=2)
    if not crops:
        raise DatasetNotFoundError(f"{name}: none of the {len(files)} image files under {root} could be read")
    images = torch.from_numpy(np.concatenate(crops))  # (N, S, S, 3)
    images = images.permute(0, 3, 1, 2).contiguous()  # (N, S, S, 3) -> (N, 3, S, S)
    spec = ImageSpec(3, image_size, IMAGENET_MEAN, IMAGENET_STD, 0)
    return ImageData(name, split, images, None, spec, (), hflip=True)
