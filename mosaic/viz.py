"""Pictures: image grids of samples, training curves, and the views of notebooks 03/04.

- grids and curves: ``image_grid``, ``sample``, ``save_samples``, ``plot_history``;
- what a patch discriminator sees: ``draw_receptive_field``, ``overlay_heatmap``, ``plot_score_maps``,
  ``readout_table``, ``plot_readouts``;
- mosaics: ``pick_by_class``, ``class_rows``, ``plot_attribution``, ``plot_class_balance``,
  ``embed_2d``, ``plot_embedding``;
- segmentation: ``mask_colors`` (label maps as RGB), ``plot_segmentation`` (images over their label maps);
- exploration: ``explore`` and ``browse`` draw one static figure each; ``interact_or_static`` wraps
  them in ipywidgets sliders when a live Jupyter frontend is attached (``widgets_live``), and draws the
  static figure otherwise (papermill, nbval, plain Python), so stored outputs stay stable.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from mosaic import patches as P
from mosaic.game import fixed_samples


def image_grid(x: torch.Tensor, nrow: int = 8, pad: int = 1) -> "np.ndarray":  # noqa: F821
    """(B, C, H, W) images in [0, 1] → one (rows·(H+pad)+pad, nrow·(W+pad)+pad, 3) float array for imshow:
    ``torchvision.utils.make_grid`` on a white background, grey images as RGB, empty cells white."""
    from torchvision.utils import make_grid

    x = x.detach().float().clamp(0, 1).cpu()
    rows = -(-x.shape[0] // nrow)
    x = torch.cat([x, x.new_ones(rows * nrow - x.shape[0], *x.shape[1:])])  # whole rows: make_grid narrows short ones
    if x.shape[0] > 1:
        grid = make_grid(x, nrow, pad, pad_value=1.0)  # (3, rows·(H+pad)+pad, nrow·(W+pad)+pad)
    else:  # make_grid returns a lone image unpadded
        grid = torch.nn.functional.pad(x[0].expand(3, -1, -1), (pad,) * 4, value=1.0)
    return grid.permute(1, 2, 0).contiguous().numpy()


def sample(generator: torch.nn.Module, n: int, z_dim: int, device: str | torch.device = "cpu", seed: int = 0) -> torch.Tensor:
    """n synthetic images from a fixed noise seed, as the student sees them during training:
    ``game.fixed_samples`` (train-mode copy of the generator; the caller's is untouched). (n, C, H, W)."""
    return fixed_samples(generator, n, z_dim, device, seed)


def save_samples(generator: torch.nn.Module, path: str | Path, z_dim: int, device: str | torch.device = "cpu",
                 n: int = 64, nrow: int = 8) -> None:
    """Write the ``image_grid`` of n fixed-seed samples as a PNG with ``torchvision.utils.save_image``
    (RGB, pixel values rounded to 8 bits), as a run's samples.png."""
    from torchvision.utils import save_image

    grid = torch.from_numpy(image_grid(sample(generator, n, z_dim, device), nrow=nrow))  # (H, W, 3)
    save_image(grid.permute(2, 0, 1), Path(path))


def _palette(void: int = 255) -> torch.Tensor:
    """(256, 3) RGB in [0, 1] for labels 0..255: class 0 black, classes 1..10 the ten dark hues of matplotlib's tab20,
    11..20 their light twins (cycled past 20), ``void`` white: neighbouring classes never share a hue."""
    from matplotlib import colormaps

    tab20 = [colormaps["tab20"]((2 * i + i // 10) % 20)[:3] for i in range(255)]  # 0, 2, .., 18, then 1, 3, .., 19
    palette = torch.tensor([(0.0, 0.0, 0.0)] + tab20)  # (256, 3)
    palette[void] = 1.0
    return palette


def mask_colors(masks: torch.Tensor, void: int = 255) -> torch.Tensor:
    """Label maps (B, H, W) → RGB images (B, 3, H, W) in [0, 1] for ``image_grid``: class 0 black (the
    background of the scene sets), classes 1.. in distinct hues (``_palette``), void white."""
    return _palette(void)[masks.long().cpu()].permute(0, 3, 1, 2)  # (B, H, W) -> (B, H, W, 3) -> (B, 3, H, W)


def plot_segmentation(images: torch.Tensor, maps: Mapping[str, torch.Tensor], nrow: int = 8,
                      class_names: Sequence[str] | None = None, title: str = ""):
    """One row of images (B, C, H, W) in [0, 1], then one row per label map set (B, H, W) of ``maps``
    (e.g. {"truth": masks, "teacher": argmax, "student": argmax}), titled by its key; with ``class_names``, a
    legend of the ``mask_colors`` colour of each class under the rows. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = {"images": images, **{k: mask_colors(v) for k, v in maps.items()}}
    legend = 0.0 if not class_names else 0.3 * -(-len(class_names) // 6)  # inches: one legend line per 6 classes
    height = 1.55 * len(rows) + legend + (0.3 if title else 0)  # an image row 1.25 in high, its title above
    fig, axes = plt.subplots(len(rows), 1, figsize=(1.25 * min(nrow, len(images)), height), squeeze=False)
    for ax, (name, x) in zip(axes[:, 0], rows.items()):
        ax.imshow(image_grid(x[:nrow], nrow))
        ax.set_title(name, fontsize=9, loc="left")
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, legend / height, 1, 1))
    if class_names:
        colours = _palette()[: len(class_names)].tolist()
        handles = [Patch(facecolor=c, edgecolor="grey", label=n) for c, n in zip(colours, class_names)]
        fig.legend(handles=handles, loc="lower center", ncol=min(6, len(class_names)), fontsize=8, frameon=False,
                   handlelength=1.2, columnspacing=1.0)
    return fig


def plot_history(history: Sequence[dict], keys: Sequence[str] = ("loss_s", "loss_g", "loss_d"), ax=None):
    """Loss curves (left axis) and the student's val score (right axis: accuracy, or mIoU on a segmentation run)
    over steps; the legends sit outside the axes, right of them, so they hide no curve."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(7, 3.5))[1]
    steps = [r["step"] for r in history]
    for k in keys:
        if any(k in r for r in history):
            ax.plot(steps, [r.get(k, float("nan")) for r in history], label=k, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    key = next((k for k in ("val_acc", "val_miou") if any(k in r for r in history)), None)
    evals = [(r["step"], r[key]) for r in history if key in r]
    if evals:
        name = {"val_acc": "val acc", "val_miou": "val mIoU"}[key]
        ax2 = ax.twinx()
        ax2.plot(*zip(*evals), "k.-", label=f"student {name} (%)")
        ax2.set_ylabel(f"{name} (%)")
        ax2.legend(loc="lower left", bbox_to_anchor=(1.15, 0), fontsize=8, borderaxespad=0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.15, 1), fontsize=8, borderaxespad=0)  # outside: no curve hidden
    return ax


# ----------------------------------------------------------------------------- what a patch discriminator sees

def _show(ax, image: torch.Tensor, **kwargs) -> None:
    """One (C, H, W) image in [0, 1] on ax, grey or RGB, no ticks."""
    image = image.detach().float().clamp(0, 1).cpu()
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1, **kwargs)
    else:
        ax.imshow(image.permute(1, 2, 0).numpy(), **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])


def draw_receptive_field(ax, image: torch.Tensor, discriminator: torch.nn.Module,
                         unit: tuple[int, int] | None = None, color: str = "tab:red") -> tuple[int, int, int]:
    """The window of input pixels that one logit of ``discriminator`` sees, drawn on image (C, H, W).

    Solid square: the window of ``unit`` (default: the middle logit), side ``.receptive_field``;
    dashed: its right neighbour's window, ``.stride`` pixels further; dots: the centres of every
    logit's window (the stride grid). The axes extend past the image when the window does (into the
    zero padding). Returns the unit's (top, left, side).
    """
    from matplotlib.patches import Rectangle

    size = image.shape[-1]
    n = discriminator.output_size(size) if hasattr(discriminator, "output_size") else 1
    i, j = unit if unit is not None else (n // 2, n // 2)
    top, left, side = P.receptive_window(discriminator, i, j)
    _show(ax, image)
    first, _, _ = P.receptive_window(discriminator, 0, 0)
    centres = [first + k * discriminator.stride + (side - 1) / 2 for k in range(n)]
    ax.plot([c for c in centres for _ in centres], [c for _ in centres for c in centres], ".", color=color,
            ms=3, alpha=0.8)
    ax.add_patch(Rectangle((left - 0.5, top - 0.5), side, side, fill=False, ec=color, lw=2))
    if j + 1 < n:
        ax.add_patch(Rectangle((left + discriminator.stride - 0.5, top - 0.5), side, side, fill=False,
                               ec=color, lw=1, ls="--"))
    lo, hi = min(-0.5, min(top, left) - 1), max(size - 0.5, max(top, left) + side)
    ax.set_xlim(lo, hi)
    ax.set_ylim(hi, lo)
    ax.set_title(f"patch {side}x{side}, stride {discriminator.stride}, map {n}x{n}", fontsize=9)
    return top, left, side


def overlay_heatmap(ax, image: torch.Tensor, heat: torch.Tensor, alpha: float = 0.85, cmap: str = "magma",
                    vmin: float = 0.0, vmax: float = 1.0, outline: str = "cyan"):
    """A per-pixel map heat (H, W) over image (C, H, W), with the image's outline (its mean-intensity
    0.5 contour) drawn on top so the shape stays visible; returns the heat map's mappable (for colorbars)."""
    _show(ax, image)
    im = ax.imshow(heat.detach().float().cpu().numpy(), cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax)
    luminance = image.detach().float().cpu().mean(dim=0).numpy()  # (H, W)
    if luminance.min() < 0.5 < luminance.max():
        ax.contour(luminance, levels=[0.5], colors=outline, linewidths=0.7)
    return im


READOUTS = {"confidence": "teacher confidence (max softmax)", "entropy": "teacher entropy (nats)",
            "d_real": "D's mean \"real\" score"}


def readout_table(readouts: Mapping[str, Mapping[str, torch.Tensor]], keys: Sequence[str] = tuple(READOUTS),
                  digits: int = 3):
    """A pandas table, one row per image set: n and the mean and std of each readout (rounded)."""
    import pandas as pd

    rows = {}
    for name, r in readouts.items():
        row = {"n": int(r[keys[0]].numel())}
        for k in keys:
            row[f"{k} mean"] = round(r[k].float().mean().item(), digits)
            row[f"{k} std"] = round(r[k].float().std().item(), digits)
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def plot_readouts(readouts: Mapping[str, Mapping[str, torch.Tensor]], keys: Sequence[str] = tuple(READOUTS),
                  axes=None):
    """One box plot per readout (teacher confidence, entropy, D's real score), one box per image set,
    with the mean as a white dot."""
    import matplotlib.pyplot as plt

    if axes is None:
        axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2))[1]
    names = list(readouts)
    for ax, k in zip(axes, keys):
        data = [readouts[n][k].float().numpy() for n in names]
        ax.boxplot(data, showfliers=False, widths=0.6)
        ax.plot(range(1, len(names) + 1), [d.mean() for d in data], "o", mfc="white", mec="k")
        ax.set_xticks(range(1, len(names) + 1), names, rotation=20, fontsize=8)
        ax.set_title(READOUTS.get(k, k), fontsize=9)
    return axes


def plot_score_maps(sets: Mapping[str, torch.Tensor], discriminator: torch.nn.Module, n: int = 6):
    """One row per image set (name -> (B, C, H, W)): its first n images under the discriminator's
    per-patch "real" probability (the whole set scored as one batch, see ``patches.patch_scores``),
    upsampled to pixels; each title is the image's mean score."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(sets), n, figsize=(1.7 * n + 0.8, 1.8 * len(sets)), squeeze=False)
    for row, (name, x) in zip(axes, sets.items()):
        scores = P.patch_scores(discriminator, x)[:n]  # (n, h, w): each set scored as one batch
        heat = P.upsample_scores(scores, discriminator.stride, x.shape[-1])  # (n, H, W)
        for ax, image, h, s in zip(row, x[:n], heat, scores):
            im = overlay_heatmap(ax, image, h)
            ax.set_title(f"{s.mean():.2f}", fontsize=8)
        row[0].set_ylabel(name, fontsize=9)
    fig.colorbar(im, ax=axes, fraction=0.02, label="P(real OOD patch)")
    return fig


def _teacher_probs(teacher: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The teacher's softmax on x (B, C, H, W), as (B, K) fp32 on the CPU."""
    with torch.no_grad():
        return torch.softmax(teacher(x.to(next(teacher.parameters()).device)).float().cpu(), dim=1)


def _draw_grid(ax, starts: Sequence[int], lw: float) -> None:
    """Red lines along the pixel borders at ``starts`` (rows and columns)."""
    for s in starts:
        ax.axhline(s - 0.5, color="tab:red", lw=lw)
        ax.axvline(s - 0.5, color="tab:red", lw=lw)


def explore(images: torch.Tensor, index: int, patch_size: int, teacher: torch.nn.Module,
            discriminator: torch.nn.Module, seed: int = 0):
    """One static figure for images[index]: the window of a ``patch_size`` patch discriminator, the
    image with its patches shuffled at that size, the trained ``discriminator``'s per-patch scores on
    the shuffled image, and the teacher's class probabilities for both. Returns the figure.

    The whole set ``images`` is shuffled (generator seeded with ``seed``) and scored, since the
    discriminator scores an image among its batch (``patches.patch_scores``)."""
    import matplotlib.pyplot as plt
    import numpy as np

    from mosaic.models import PatchDiscriminator, reachable_patch_sizes

    images = images.float()
    shuffled_all = P.shuffle_patches(images, patch_size, torch.Generator().manual_seed(seed))  # (N, C, H, W)
    scores = P.patch_scores(discriminator, shuffled_all)  # (N, h, w)
    d_real = (P.patch_scores(discriminator, images)[index].mean(), scores[index].mean())
    x, shuffled = images[index:index + 1], shuffled_all[index:index + 1]  # (1, C, H, W) each
    heat = P.upsample_scores(scores[index:index + 1], discriminator.stride, x.shape[-1])[0]  # (H, W)
    probs = _teacher_probs(teacher, torch.cat([x, shuffled]))  # (2, K): original, shuffled
    confidence = probs.amax(dim=1)  # (2,)
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.6), gridspec_kw={"width_ratios": [1, 1, 1, 1.6]})
    if patch_size in reachable_patch_sizes(patch_size):
        draw_receptive_field(axes[0], x[0], PatchDiscriminator(x.shape[1], patch_size))
    else:  # no PatchDiscriminator has this size: show the shuffle grid instead
        _show(axes[0], x[0])
        starts = P.centered_starts(x.shape[-1], patch_size)
        _draw_grid(axes[0], starts + [starts[-1] + patch_size], lw=0.8)  # cell borders
        axes[0].set_title(f"{patch_size}px grid\n(no PatchDiscriminator of this size)", fontsize=9)
    _show(axes[1], shuffled[0])
    axes[1].set_title(f"shuffled on a {patch_size}px grid\nteacher conf {confidence[1]:.2f} "
                      f"(was {confidence[0]:.2f})", fontsize=9)
    overlay_heatmap(axes[2], shuffled[0], heat)
    axes[2].set_title(f"trained D (patch {discriminator.receptive_field})\nreal {d_real[1]:.2f} "
                      f"(was {d_real[0]:.2f})", fontsize=9)
    k = probs.shape[1]
    axes[3].bar(np.arange(k) - 0.2, probs[0].numpy(), 0.4, label="original")
    axes[3].bar(np.arange(k) + 0.2, probs[1].numpy(), 0.4, label="shuffled")
    axes[3].set_xticks(range(k))
    axes[3].set_ylim(0, 1)
    axes[3].set_title("teacher p(class)", fontsize=9)
    axes[3].legend(fontsize=7)
    fig.suptitle(f"image {index}", fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- mosaics

def pick_by_class(pred: torch.Tensor, score: torch.Tensor, num_classes: int, per_class: int) -> torch.Tensor:
    """(num_classes, per_class) long: for each class c, the indices i with pred[i] == c in descending
    ``score`` order (ties: lower index first); -1 where a class has fewer images."""
    out = torch.full((num_classes, per_class), -1, dtype=torch.long)
    order = torch.sort(score, descending=True, stable=True).indices  # (N,)
    for c in range(num_classes):
        members = order[pred[order] == c][:per_class]
        out[c, :members.numel()] = members
    return out


def class_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (N, C, H, W) gathered by index (K, per_class) into (K·per_class, C, H, W), row-major, with
    blank (white) images where index is -1: ``image_grid(..., nrow=per_class)`` gives a row per class."""
    flat = index.flatten()  # (K·per_class,)
    out = torch.ones(flat.numel(), *x.shape[1:])
    out[flat >= 0] = x[flat[flat >= 0]].float().cpu()
    return out


def plot_class_rows(panels: Mapping[str, tuple[torch.Tensor, torch.Tensor]], class_names: Sequence[str],
                    axes=None):
    """Side-by-side panels (title -> (images, index from ``pick_by_class``)), one row per class."""
    import matplotlib.pyplot as plt

    if axes is None:
        axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 0.42 * len(class_names) + 1))[1]
    for k, (ax, (title, (x, index))) in enumerate(zip(axes, panels.items())):
        grid = image_grid(class_rows(x, index), nrow=index.shape[1])
        ax.imshow(grid)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        h = x.shape[-2] + 1
        ax.set_yticks([1 + h * r + h / 2 for r in range(len(class_names))],
                      class_names if k == 0 else [""] * len(class_names), fontsize=8)
    return axes


def plot_attribution(x: torch.Tensor, attributions: Mapping[str, "P.Attribution"], n: int | None = None,
                     size: float = 2.3):
    """One row per image of x (B, C, H, W): the image with its patch grid, then its re-assembly from
    real patches for each search space, titled with the mean patch distance and the pixel RMSE; panels of
    ``size`` inches."""
    import matplotlib.pyplot as plt

    n = n or x.shape[0]
    cols = 1 + len(attributions)
    fig, axes = plt.subplots(n, cols, figsize=(size * cols, size * n), squeeze=False)
    first = next(iter(attributions.values()))
    p = x.shape[-1] - first.starts[-1]  # patch side: the last start is size - patch
    rmse = {name: a.pixel_rmse(x.cpu()) for name, a in attributions.items()}  # (B,) each
    for r in range(n):
        _show(axes[r, 0], x[r])
        _draw_grid(axes[r, 0], first.starts, lw=0.6)
        axes[r, 0].set_title("synthetic" if r == 0 else "", fontsize=9)
        for c, (name, a) in enumerate(attributions.items(), start=1):
            _show(axes[r, c], a.reassembled[r])
            axes[r, c].set_title(f"{name}: d {a.distance[r].mean():.2f}, rmse {rmse[name][r]:.2f}", fontsize=8)
    fig.suptitle(f"each {p}x{p} patch replaced by its nearest real OOD patch", fontsize=10)
    return fig


def plot_class_balance(preds: Mapping[str, torch.Tensor], class_names: Sequence[str], ax=None):
    """Grouped bars: the fraction of each image set the teacher assigns to each class."""
    import matplotlib.pyplot as plt
    import numpy as np

    ax = ax or plt.subplots(figsize=(8, 3))[1]
    k, width = len(class_names), 0.8 / len(preds)
    for m, (name, pred) in enumerate(preds.items()):
        frac = (torch.bincount(pred, minlength=k).float() / pred.numel()).numpy()
        ax.bar(np.arange(k) - 0.4 + width * (m + 0.5), frac, width, label=name)
    ax.axhline(1 / k, color="k", lw=0.8, ls=":", label="uniform")
    ax.set_xticks(range(k), class_names, rotation=30, fontsize=8)
    ax.set_ylabel("fraction of images")
    ax.legend(fontsize=8)
    return ax


def embed_2d(features: Mapping[str, torch.Tensor], method: str = "pca", seed: int = 0):
    """Joint 2-D embedding of several feature sets (name -> (n, D)): ``pca`` (fit on all sets together)
    or ``tsne``. Returns ({name: (n, 2) array}, explained variance ratio of the two PCA axes or None)."""
    import numpy as np

    names = list(features)
    x = np.concatenate([features[n].float().numpy() for n in names])  # (sum n, D)
    if method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed)
        y, explained = pca.fit_transform(x), tuple(pca.explained_variance_ratio_.tolist())
    elif method == "tsne":
        from sklearn.manifold import TSNE

        y, explained = TSNE(n_components=2, init="pca", random_state=seed).fit_transform(x), None
    else:
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")
    bounds = np.cumsum([0] + [len(features[n]) for n in names])
    return {n: y[a:b] for n, a, b in zip(names, bounds[:-1], bounds[1:])}, explained


def plot_embedding(coords: Mapping[str, Any], ax=None, title: str = ""):
    """Scatter of 2-D points, one colour per set (name -> (n, 2))."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(5, 4.5))[1]
    for name, y in coords.items():
        ax.scatter(y[:, 0], y[:, 1], s=6, alpha=0.5, label=name)
    ax.legend(fontsize=8, markerscale=2)
    ax.set_title(title, fontsize=9)
    return ax


def browse(generator: torch.nn.Module, teacher: torch.nn.Module, cls: int, seed: int, z_dim: int,
           class_names: Sequence[str] = (), n: int = 16, pool: int = 256):
    """One static figure: of ``pool`` samples drawn with ``seed``, the ``n`` the teacher gives the
    highest p(cls), titled with how many of the pool it predicts as ``cls``. Returns the figure."""
    import matplotlib.pyplot as plt

    x = sample(generator, pool, z_dim, next(generator.parameters()).device, seed=seed)  # (pool, C, H, W)
    probs = _teacher_probs(teacher, x)  # (pool, K)
    p = probs[:, cls]  # (pool,)
    top = torch.sort(p, descending=True, stable=True).indices[:n]
    fig, ax = plt.subplots(figsize=(6, 1.8))
    ax.imshow(image_grid(x[top], nrow=min(n, 8)))
    ax.axis("off")
    name = class_names[cls] if class_names else str(cls)
    ax.set_title(f"class {cls} ({name}), seed {seed}: {int((probs.argmax(dim=1) == cls).sum())}/{pool} predicted; "
                 f"p(class) of these {p[top].min():.2f}-{p[top].max():.2f}", fontsize=9)
    return fig


# ----------------------------------------------------------------------------- widgets with a static fallback

def widgets_live() -> bool:
    """True when ipywidgets can render here: an IPython kernel started by a Jupyter server (JupyterLab
    or Notebook set ``JPY_SESSION_NAME``) with ipywidgets installed. papermill, nbval and plain Python
    get False."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell" and "JPY_SESSION_NAME" in os.environ


def interact_or_static(fn: Callable[..., Any], static: Mapping[str, Any], *, live: bool | None = None,
                       **controls: Any) -> bool:
    """``ipywidgets.interact(fn, **controls)`` when ``live`` (None: ``widgets_live()``, e.g. pass True in
    VS Code), else ``fn(**static)`` once (one static figure, so the stored output of a papermill/nbval
    run stays the same). Returns whether the widgets were shown."""
    if widgets_live() if live is None else live:
        import ipywidgets

        def update(**values: Any) -> None:  # a plain function: interact needs a __name__ (a partial has none),
            fn(**values)  # and returning None draws the figure once, not twice

        ipywidgets.interact(update, **{name: _control(name, spec, static.get(name)) for name, spec in controls.items()})
        return True
    fn(**static)
    return False


def _control(name: str, spec: Any, value: Any) -> Any:
    """The widget of one control, starting at ``value`` (the static figure's): ``(min, max[, step])`` of
    ints -> IntSlider (redrawn on release), a list -> Dropdown, a widget -> itself."""
    import ipywidgets

    if isinstance(spec, ipywidgets.Widget):
        return spec
    if isinstance(spec, tuple) and len(spec) in (2, 3) and all(isinstance(v, int) for v in spec):
        low, high, step = (*spec, 1)[:3]
        return ipywidgets.IntSlider(value=low if value is None else value, min=low, max=high, step=step,
                                    description=name, continuous_update=False)
    if isinstance(spec, (list, tuple)):
        return ipywidgets.Dropdown(options=list(spec), value=spec[0] if value is None else value, description=name)
    raise TypeError(f"control {name!r}: give (min, max[, step]) ints, a list of choices or a widget, got {spec!r}")


__all__ = ["image_grid", "sample", "save_samples", "plot_history",
           "draw_receptive_field", "overlay_heatmap", "READOUTS", "readout_table", "plot_readouts", "plot_score_maps",
           "explore",
           "pick_by_class", "class_rows", "plot_class_rows", "plot_attribution", "plot_class_balance",
           "embed_2d", "plot_embedding", "browse", "widgets_live", "interact_or_static"]
