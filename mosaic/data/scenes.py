"""Scenes: real item images (Fashion-MNIST clothes, MNIST digits, photo crops) placed on a larger canvas,
the offline dense-prediction task of the library.

One rule composes every scene, in-domain or out-of-domain:

- the canvas is ``size`` x ``size`` (64 by default), black (all channels 0);
- a scene holds k ~ U{2, ..., 4} items, drawn uniformly with replacement from the item set, each
  pasted unscaled at a uniformly random top-left corner that keeps it inside the canvas;
- an item covers the pixels where any of its channels is > 0 (Fashion-MNIST and MNIST items have a
  black background, so this is their silhouette; a photo crop covers its whole square);
- items are pasted in order, so a later item hides the earlier ones where they overlap;
- pixel label: 0 for background, ``c + 1`` for a pixel covered last by an item of class c.

So every labeled pixel is one the label's item painted, and every background pixel is 0 (tested).
All random numbers come from ``torch.Generator().manual_seed(seed)``: same items, same seed, same scenes.
"""
from __future__ import annotations

import torch

SCENE_SIZE = 64  # canvas side in pixels
ITEMS_PER_SCENE = (2, 4)  # fewest and most items in one scene (inclusive)


def compose_scenes(items: torch.Tensor, item_labels: torch.Tensor | None, n: int, size: int = SCENE_SIZE,
                   items_per_scene: tuple[int, int] = ITEMS_PER_SCENE, seed: int = 0
                   ) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
    """``n`` scenes of ``items`` (uint8 (M, C, h, w)) with labels ``item_labels`` (long (M,) or None).

    Returns images uint8 (n, C, size, size), masks uint8 (n, size, size) (None without item labels)
    and the layout: ``count`` (n,) items per scene, ``index`` (n, max) item positions in ``items``,
    ``top``/``left`` (n, max) corners; slots j >= count[i] are unused.
    """
    m, c, h, w = items.shape
    lo, hi = items_per_scene
    if not (m >= 1 and 1 <= lo <= hi and h <= size and w <= size):
        raise ValueError(f"compose_scenes needs >= 1 item no larger than the {size}x{size} canvas and "
                         f"1 <= fewest <= most items per scene; got {m} items of {h}x{w}, {items_per_scene}")
    if item_labels is not None and item_labels.max() + 1 >= 255:
        raise ValueError("scene masks are uint8 with 255 for void: item classes must be < 254")
    g = torch.Generator().manual_seed(seed)
    layout = {
        "count": torch.randint(lo, hi + 1, (n,), generator=g),
        "index": torch.randint(0, m, (n, hi), generator=g),
        "top": torch.randint(0, size - h + 1, (n, hi), generator=g),
        "left": torch.randint(0, size - w + 1, (n, hi), generator=g),
    }
    canvas = items.new_zeros(n, size, size, c)  # (n, S, S, C): channels last for the paste below
    masks = None if item_labels is None else torch.zeros(n, size, size, dtype=torch.uint8)
    rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    for j in range(hi):  # slot j of every scene with more than j items: one vectorised paste
        scene = torch.nonzero(layout["count"] > j).squeeze(1)  # (a,)
        which = layout["index"][scene, j]  # (a,)
        b = scene.view(-1, 1, 1)  # (a, 1, 1)
        r = layout["top"][scene, j].view(-1, 1, 1) + rows  # (a, h, 1)
        q = layout["left"][scene, j].view(-1, 1, 1) + cols  # (a, 1, w)
        item = items[which].permute(0, 2, 3, 1)  # (a, C, h, w) -> (a, h, w, C)
        covered = item.amax(dim=3) > 0  # (a, h, w): the item's silhouette
        canvas[b, r, q] = torch.where(covered.unsqueeze(3), item, canvas[b, r, q])
        if masks is not None:
            label = (item_labels[which] + 1).to(torch.uint8).view(-1, 1, 1)  # (a, 1, 1)
            masks[b, r, q] = torch.where(covered, label, masks[b, r, q])
    return canvas.permute(0, 3, 1, 2).contiguous(), masks, layout  # (n, C, S, S)


__all__ = ["SCENE_SIZE", "ITEMS_PER_SCENE", "compose_scenes"]
