"""An offline natural-image OOD source: scikit-image's bundled sample photos and textures, as a folder.

``write_sample_photos("data/skimage_photos")`` writes every sample image that scikit-image ships
inside its wheel (no download) as a PNG, so ``get_dataset("folder:data/skimage_photos", "train")``
gives random crops of real photos (astronaut, coffee, rocket, grass, gravel, brick, ...) anywhere.
"""
from __future__ import annotations

import warnings
from pathlib import Path

# images bundled in the scikit-image wheel (the others in skimage.data are fetched from the internet)
SAMPLE_NAMES = ("astronaut", "brick", "camera", "cat", "checkerboard", "clock", "coffee", "coins",
                "colorwheel", "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry",
                "logo", "microaneurysms", "moon", "page", "retina", "rocket", "text")


def write_sample_photos(path: str | Path = "data/skimage_photos") -> Path:
    """Write scikit-image's bundled sample images as PNGs under ``path`` (idempotent); returns path."""
    import numpy as np
    from PIL import Image
    from skimage import data as samples

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    missing = []
    for name in SAMPLE_NAMES:
        target = path / f"{name}.png"
        if target.exists():
            continue
        try:
            image = np.asarray(getattr(samples, name)())
        except Exception:  # not bundled in this scikit-image version: skip it, say so once
            missing.append(name)
            continue
        if image.dtype != np.uint8:
            image = image.astype(float)
            image = (255 * (image - image.min()) / max(image.max() - image.min(), 1e-8)).astype(np.uint8)
        Image.fromarray(image[..., :3] if image.ndim == 3 else image).save(target)
    if missing:
        warnings.warn(f"scikit-image did not provide {missing}; wrote the others to {path}")
    if not any(path.glob("*.png")):
        raise RuntimeError(f"no scikit-image sample image could be written to {path}; is scikit-image installed?")
    return path


__all__ = ["write_sample_photos", "SAMPLE_NAMES"]
