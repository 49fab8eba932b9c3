"""Patch-level operations: what a patch discriminator sees, and how mosaics are made of real patches.

Grids. A square image of side ``size`` is cut along each axis at ``grid_starts(size, patch, stride)``;
the patches of an image are the crops at every (top, left) pair of those starts, row-major, so an
(B, C, H, W) batch gives (B, L, C, p, p) patches with L = len(starts)². With ``cover=True`` one more
start, ``size - patch``, is added when the grid would leave a strip at the bottom/right, so the
patches cover every pixel (the last row/column overlaps its neighbour).

- ``extract_patches`` / ``reassemble``: cut an image into grid patches and put patches back
  (overlaps averaged, uncovered pixels taken from a background); reassembling an image from its own
  patches gives the image back exactly.
- ``shuffle_patches``: permute the cells of a centred non-overlapping grid (the paper's point made
  visible: the local patches stay, the global arrangement goes).
- ``receptive_window`` / ``patch_scores`` / ``upsample_scores``: which input window each logit of a
  discriminator sees, and its per-patch "real" probabilities as a map over the image.
- ``patch_bank`` / ``nearest_patches`` / ``PatchIndex`` / ``attribute``: re-build an image from its
  nearest real patches (in pixel space, or in the discriminator's feature space via ``patch_features``).
- ``patch_rmse``: per set of images, the mean pixel error of that re-building (the mosaic distance).
- ``measure``: the teacher's confidence, entropy and prediction and the discriminator's mean "real"
  score per image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from mosaic.losses import entropy
from mosaic.nnutil import eval_mode

Embedding = Callable[[torch.Tensor], torch.Tensor]  # patches (N, C, p, p) -> vectors (N, F)


# ----------------------------------------------------------------------------- grids

def grid_starts(size: int, patch: int, stride: int | None = None, cover: bool = False) -> list[int]:
    """Top (or left) pixel of each patch along one axis: 0, stride, 2·stride, ... while it fits.

    ``stride`` defaults to ``patch`` (non-overlapping). ``cover=True`` adds ``size - patch`` when the
    last patch would stop short of the edge, so every pixel is covered.
    """
    if not 1 <= patch <= size:
        raise ValueError(f"patch must be between 1 and the image size {size}, got {patch}")
    stride = stride or patch
    starts = list(range(0, size - patch + 1, stride))
    if cover and starts[-1] + patch < size:
        starts.append(size - patch)
    return starts


def _even_step(starts: list[int], patch: int) -> int | None:
    """The common step of ``starts`` when they are evenly spaced without overlaps (step >= patch), else None."""
    steps = {b - a for a, b in zip(starts, starts[1:])} or {patch}
    step = steps.pop()
    return step if not steps and step >= patch else None


def extract_patches(x: torch.Tensor, patch: int, starts: list[int] | None = None) -> torch.Tensor:
    """(B, C, H, W) -> (B, L, C, p, p): the crops at every (top, left) in starts x starts, row-major.

    ``starts`` defaults to ``grid_starts(H, patch, cover=True)``; the same starts serve both axes, and
    any starts work (the uneven ones of ``cover=True`` too): the stride-1 windows of ``Tensor.unfold``
    (a view) are picked at the starts.
    """
    starts = grid_starts(x.shape[-1], patch, cover=True) if starts is None else starts
    at = torch.tensor(starts, device=x.device)  # (n,)
    windows = x.unfold(2, patch, 1).unfold(3, patch, 1)  # (B, C, H-p+1, W-p+1, p, p)
    crops = windows[:, :, at[:, None], at[None, :]]  # (B, C, n, n, p, p)
    return crops.permute(0, 2, 3, 1, 4, 5).flatten(1, 2).contiguous()  # (B, L, C, p, p)


def reassemble(patches: torch.Tensor, size: int, starts: list[int] | None = None,
               background: torch.Tensor | None = None) -> torch.Tensor:
    """Inverse of ``extract_patches``: (B, L, C, p, p) -> (B, C, size, size).

    Pixels covered by several patches get their mean; pixels covered by none come from
    ``background`` (B, C, size, size), zeros when it is None. Evenly spaced starts without overlaps
    (``shuffle_patches``' grid) are placed by ``F.fold``; overlapping or uneven grids (``cover=True``)
    are summed patch by patch in row-major order, which fold's summation order would not reproduce
    bit for bit.
    """
    b, n, c, p, _ = patches.shape
    starts = grid_starts(size, p, cover=True) if starts is None else starts
    if n != len(starts) ** 2:
        raise ValueError(f"{n} patches do not fit a {len(starts)}x{len(starts)} grid of starts {starts}")
    step = _even_step(starts, p)
    if step is not None:
        lo, hi = starts[0], starts[-1] + p  # the grid's span along each axis, padded to size below
        cols = patches.permute(0, 2, 3, 4, 1).reshape(b, c * p * p, n)  # (B, C·p·p, L)
        total = F.pad(F.fold(cols, hi - lo, p, stride=step), (lo, size - hi) * 2)  # (B, C, size, size)
        count = F.pad(F.fold(patches.new_ones(1, p * p, n), hi - lo, p, stride=step), (lo, size - hi) * 2)
    else:
        total = patches.new_zeros(b, c, size, size)
        count = patches.new_zeros(1, 1, size, size)
        for k, (top, left) in enumerate((t, s) for t in starts for s in starts):
            total[:, :, top:top + p, left:left + p] += patches[:, k]
            count[:, :, top:top + p, left:left + p] += 1
    out = total / count.clamp(min=1)
    if background is not None:
        out = torch.where(count > 0, out, background.to(out.dtype))
    return out  # (B, C, size, size)


def centered_starts(size: int, patch: int) -> list[int]:
    """The non-overlapping grid of size // patch cells per axis, centred in the image."""
    starts = grid_starts(size, patch)
    offset = (size - (starts[-1] + patch)) // 2
    return [s + offset for s in starts]


def _permutation(n: int, generator: torch.Generator | None, derange: bool) -> torch.Tensor:
    """A random permutation of range(n); with ``derange`` none stays in place (n >= 2)."""
    while True:
        perm = torch.randperm(n, generator=generator)
        if not derange or n < 2 or not (perm == torch.arange(n)).any():
            return perm


def shuffle_patches(x: torch.Tensor, patch: int, generator: torch.Generator | None = None,
                    derange: bool = True) -> torch.Tensor:
    """Each image's patches, moved around: (B, C, H, W) -> (B, C, H, W).

    The image is cut into a centred non-overlapping grid of ``H // patch`` cells per axis
    (``centered_starts``); each image gets its own random permutation of its cells (with
    ``derange``, no cell stays where it was). Pixels outside the grid (the border strips left when
    ``patch`` does not divide H) stay in place. Every local ``patch``-sized cell is still a real
    patch of the image; only their arrangement changes.
    """
    starts = centered_starts(x.shape[-1], patch)
    patches = extract_patches(x, patch, starts)  # (B, L, C, p, p)
    n = patches.shape[1]
    order = torch.stack([_permutation(n, generator, derange) for _ in range(x.shape[0])])  # (B, L)
    moved = patches[torch.arange(x.shape[0])[:, None], order]  # (B, L, C, p, p)
    return reassemble(moved, x.shape[-1], starts, background=x)


# ----------------------------------------------------------------------------- what a discriminator sees

def _convs(discriminator: nn.Module) -> list[nn.Conv2d]:
    return [m for m in discriminator.modules() if isinstance(m, nn.Conv2d)]


def receptive_window(discriminator: nn.Module, i: int = 0, j: int = 0) -> tuple[int, int, int]:
    """(top, left, side) in input pixels of the window that logit (i, j) of the map sees.

    The side is ``discriminator.receptive_field``; neighbouring logits are ``.stride`` pixels apart;
    the first window starts at minus the padding each conv adds (in input pixels), so windows at the
    border reach outside the image (into the zero padding).
    """
    origin, jump = 0, 1
    for conv in _convs(discriminator):
        origin -= conv.padding[0] * jump
        jump *= conv.stride[0]
    return origin + i * jump, origin + j * jump, discriminator.receptive_field


@torch.no_grad()
def patch_scores(discriminator: nn.Module, x: torch.Tensor, batch_stats: bool = True,
                 batch_size: int = 4096) -> torch.Tensor:
    """sigmoid(D(x)): (B, C, H, W) -> (B, h, w), the probability D gives each patch of being real OOD.

    ``batch_stats=True`` (default) scores as the game does: BatchNorm normalises with the statistics
    of the batch being scored (the game always shows D a batch of only real or only synthetic
    images), so pass one homogeneous set, scored in batches of ``batch_size`` (one batch by default
    up to 4096 images); a copy of D runs, so its running statistics stay untouched.
    ``batch_stats=False``: eval mode, BatchNorm with its running statistics (the average over the
    real and synthetic batches of training), so a score does not depend on the other images.
    """
    import copy

    net = copy.deepcopy(discriminator).train(batch_stats)
    device = next(net.parameters()).device
    out = [torch.sigmoid(net(x[k:k + batch_size].to(device)).float()).cpu()
           for k in range(0, x.shape[0], batch_size)]  # [(b, 1, h, w)]
    return torch.cat(out)[:, 0]  # (B, h, w)


def upsample_scores(scores: torch.Tensor, stride: int, size: int) -> torch.Tensor:
    """(B, h, w) per-logit scores -> (B, size, size) per-pixel map for overlays.

    Bilinear upsampling by ``stride`` puts logit i's value at pixel stride·(i + 1/2), the centre of
    its window for the PatchDiscriminator's symmetric padding; the map is then cut to ``size`` or
    extended with its edge values when h·stride differs from it.
    """
    h, w = scores.shape[-2:]
    up = F.interpolate(scores[:, None].float(), size=(h * stride, w * stride), mode="bilinear",
                       align_corners=False)  # (B, 1, h·s, w·s)
    pad_h, pad_w = max(0, size - h * stride), max(0, size - w * stride)
    up = F.pad(up, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else up
    return up[:, 0, :size, :size]  # (B, size, size)


def patch_features(discriminator: nn.Module) -> Embedding:
    """The discriminator's feature of a patch: every layer but the last 1x1 conv, averaged over space.

    Returns a function (N, C, p, p) -> (N, F) to use as ``attribute``'s embedding. It runs in eval
    mode (BatchNorm with running statistics): one fixed map for bank and query patches alike, so
    their distances are comparable (batch statistics would normalise each set differently).
    """
    body = discriminator.net[:-1]

    @torch.no_grad()
    def embed(patches: torch.Tensor) -> torch.Tensor:
        device = next(body.parameters()).device
        with eval_mode(discriminator):
            return torch.cat([body(patches[k:k + 4096].to(device)).float().mean(dim=(2, 3)).cpu()
                              for k in range(0, patches.shape[0], 4096)])  # (N, F)

    return embed


# ----------------------------------------------------------------------------- mosaic attribution

def patch_bank(images: torch.Tensor, patch: int, stride: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Every patch of ``images`` (N, C, H, W) at ``stride``: patches (N·L, C, p, p) and their source
    (N·L, 3) long rows (image index, top, left)."""
    starts = grid_starts(images.shape[-1], patch, stride, cover=True)
    patches = extract_patches(images, patch, starts).flatten(0, 1)  # (N·L, C, p, p)
    corners = torch.tensor([(t, s) for t in starts for s in starts])  # (L, 2)
    n, L = images.shape[0], corners.shape[0]
    source = torch.cat([torch.arange(n).repeat_interleave(L)[:, None], corners.repeat(n, 1)], dim=1)
    return patches, source  # (N·L, C, p, p), (N·L, 3)


def nearest_patches(query: torch.Tensor, bank: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query row its nearest bank row in L2: (Q, ...) and (N, ...) -> distance (Q,), index (Q,).

    Rows are flattened; ``torch.cdist`` on chunks of ``batch_size`` queries, from the differences (not
    the matrix-product expansion, whose distances near zero are off by ~1e-4). Ties (equal distances
    as computed) go to the lowest bank index.
    """
    q, b = query.flatten(1).float(), bank.flatten(1).float()  # (Q, D), (N, D)
    best = [torch.cdist(qk, b, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1)
            for qk in q.split(batch_size)]  # (q, N) distances -> their first minimum per row
    return torch.cat([m.values for m in best]), torch.cat([m.indices for m in best])


@dataclass
class Attribution:
    """An image re-built from the nearest real patches of a bank (see ``attribute``)."""

    reassembled: torch.Tensor  # (B, C, H, W) the matched real patches put in place
    distance: torch.Tensor  # (B, L) distance of each patch to its match, in the space searched
    source: torch.Tensor  # (B, L, 3) long: (bank image, top, left) of each match
    starts: list[int]  # the grid along each axis

    def pixel_rmse(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) root-mean-square pixel difference between x and its re-assembly."""
        return (x.float() - self.reassembled).pow(2).flatten(1).mean(dim=1).sqrt()


class PatchIndex:
    """Every ``stride``-spaced ``patch``-sized patch of ``images`` (N, C, H, W), searchable by L2 in
    pixels (``embed=None``) or as ``embed(patch)`` vectors (e.g. ``patch_features(discriminator)``).
    The bank and its vectors are computed once; ``attribute`` re-builds any number of images from it.
    """

    def __init__(self, images: torch.Tensor, patch: int, stride: int = 2, embed: Embedding | None = None) -> None:
        self.patch, self.stride, self.embed = patch, stride, embed
        self.bank, self.source = patch_bank(images.float(), patch, stride)  # (M, C, p, p), (M, 3)
        self.vectors = self.bank if embed is None else embed(self.bank)  # (M, ...)

    def __len__(self) -> int:
        return self.bank.shape[0]

    def attribute(self, x: torch.Tensor) -> Attribution:
        """Replace each patch of the grid ``grid_starts(H, patch, cover=True)`` of x (B, C, H, W) by its
        nearest bank patch; the distance is measured where the search happened (pixels or vectors)."""
        starts = grid_starts(x.shape[-1], self.patch, cover=True)
        queries = extract_patches(x.float(), self.patch, starts)  # (B, L, C, p, p)
        b, L = queries.shape[:2]
        flat = queries.flatten(0, 1)  # (B·L, C, p, p)
        dist, index = nearest_patches(flat if self.embed is None else self.embed(flat), self.vectors)
        matched = self.bank[index].view_as(queries)  # (B, L, C, p, p)
        return Attribution(reassemble(matched, x.shape[-1], starts), dist.view(b, L),
                           self.source[index].view(b, L, 3), starts)


def attribute(x: torch.Tensor, bank_images: torch.Tensor, patch: int, stride: int = 2,
              embed: Embedding | None = None) -> Attribution:
    """``PatchIndex(bank_images, patch, stride, embed).attribute(x)``: x (B, C, H, W) re-built from
    the nearest real patches of bank_images."""
    return PatchIndex(bank_images, patch, stride, embed).attribute(x)


def patch_rmse(sets: dict[str, torch.Tensor], bank_images: torch.Tensor, patch: int, stride: int = 2) -> dict[str, float]:
    """How much each set of images (name -> (B, C, H, W) in [0, 1]) is made of the bank's real patches: the mean
    over its images of the pixel RMSE between an image and its re-assembly from the nearest ``patch``-sized bank
    patches (``PatchIndex(bank_images, patch, stride).attribute``). The issue's "nearest-real-OOD-patch error":
    lower = closer to a mosaic of real patches; one bank for every set, so the numbers compare."""
    index = PatchIndex(bank_images, patch, stride)
    return {name: index.attribute(x).pixel_rmse(x).mean().item() for name, x in sets.items()}


# ----------------------------------------------------------------------------- what the players read

@torch.no_grad()
def measure(teacher: nn.Module, x: torch.Tensor, discriminator: nn.Module | None = None, features: bool = False,
            batch_stats: bool = True, batch_size: int = 512) -> dict[str, torch.Tensor]:
    """Per image of x (B, C, H, W): the teacher's ``confidence`` (max softmax), ``entropy`` (nats),
    ``pred`` (argmax); with a discriminator, ``d_real`` (mean per-patch "real" probability, see
    ``patch_scores`` for ``batch_stats``: x is scored as one set); with ``features``, the teacher's
    ``features`` (B, D). All on the CPU."""
    device = next(teacher.parameters()).device
    logits, feats = [], []
    for k in range(0, x.shape[0], batch_size):
        xb = x[k:k + batch_size].to(device)
        f = teacher.forward_features(xb)  # (b, D)
        logits.append(teacher.head(f).float().cpu())  # (b, K)
        if features:
            feats.append(f.float().cpu())
    logits = torch.cat(logits)  # (B, K)
    log_p = torch.log_softmax(logits, dim=1)
    out = {"confidence": log_p.exp().amax(dim=1), "entropy": entropy(logits), "pred": log_p.argmax(dim=1)}
    if discriminator is not None:
        out["d_real"] = patch_scores(discriminator, x, batch_stats).flatten(1).mean(dim=1)
    if features:
        out["features"] = torch.cat(feats)
    return out


__all__ = ["grid_starts", "centered_starts", "extract_patches", "reassemble", "shuffle_patches",
           "receptive_window", "patch_scores", "upsample_scores", "patch_features", "patch_bank",
           "nearest_patches", "Attribution", "PatchIndex", "attribute", "patch_rmse", "measure", "Embedding"]
