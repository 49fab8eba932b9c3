"""Tests for mosaic.data: registry, splits, errors, folder crops, adaptation, batching, selection."""
import gzip
import io
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from mosaic.data import (DATASETS, Batcher, DatasetNotFoundError, ImageData, adapt, adapt_images,
                         entropy_subset, get_dataset, iterate)
from mosaic.data import fetch, registry
from mosaic.data.idx import read_idx
from mosaic.spec import ImageSpec

FMNIST_PRESENT = (Path(registry.FMNIST_DEBIAN_DIR) / "train-images-idx3-ubyte.gz").is_file()


def _rows(data: ImageData) -> set[bytes]:
    return {img.numpy().tobytes() for img in data.images}


def _toy(n: int = 12, channels: int = 1, size: int = 8, hflip: bool = False, seed: int = 0) -> ImageData:
    """Random uint8 images whose label is their index."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    spec = ImageSpec(channels, size, (0.5,) * channels, (0.25,) * channels, n)
    return ImageData("toy", "train", images, torch.arange(n), spec, tuple(map(str, range(n))), hflip)


# --- registry, splits, errors ------------------------------------------------------------------------

def test_unknown_name_lists_all_valid_names():
    with pytest.raises(ValueError) as err:
        get_dataset("imagenet-9000", "train")
    for name in DATASETS:
        assert name in str(err.value)
    assert "folder:PATH" in DATASETS and "cifar10" in DATASETS and "mnist5k" in DATASETS


def test_unknown_split_lists_valid_splits():
    with pytest.raises(ValueError, match="train, val, test"):
        get_dataset("digits", "validation")


def test_mnist5k_splits_sizes_disjoint_deterministic():
    train, val, test = (get_dataset("mnist5k", s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (3600, 400, 1000)
    assert train.images.shape[1:] == (1, 28, 28) and train.images.dtype == torch.uint8
    assert len(_rows(train) | _rows(val)) == 4000  # disjoint and together the whole source train split
    assert not (_rows(train) | _rows(val)) & _rows(test)
    again = get_dataset("mnist5k", "val")
    assert torch.equal(again.images, val.images) and torch.equal(again.labels, val.labels)
    assert repr(train) == "ImageData(mnist5k/train: 3600 x 1x28x28, 10 classes)"
    assert train.hflip is False and train.classes == tuple("0123456789")


def test_digits_splits_and_scaling():
    train, val, test = (get_dataset("digits", s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (1295, 143, 359)
    rows = [_rows(train), _rows(val), _rows(test)]
    assert len(rows[0] | rows[1] | rows[2]) == sum(map(len, rows))  # disjoint
    assert train.images.max() == 255 and train.spec.size == 8  # 16 -> 255
    from sklearn.datasets import load_digits
    raw = torch.from_numpy(load_digits().images)  # (1797, 8, 8) in 0..16
    scaled = torch.round(raw * 255 / 16).to(torch.uint8).unsqueeze(1)  # (1797, 1, 8, 8)
    assert _rows(test) <= {r.numpy().tobytes() for r in scaled}
    x = torch.cat([train.images, val.images]).float() / 255  # spec stats are of the source train split
    assert x.mean().item() == pytest.approx(train.spec.mean[0], abs=1e-3)
    assert x.std(unbiased=False).item() == pytest.approx(train.spec.std[0], abs=1e-3)


@pytest.mark.skipif(not FMNIST_PRESENT, reason="needs apt-get install dataset-fashion-mnist")
def test_fmnist_debian_fallback(tmp_path):
    train, val, test = (get_dataset("fmnist", s, root=tmp_path) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (54000, 6000, 10000)
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert not (_rows(val) & _rows(test)) and train.classes[0] == "T-shirt/top"
    x = torch.cat([train.images, val.images]).float() / 255
    assert x.mean().item() == pytest.approx(train.spec.mean[0], abs=1e-3)
    assert torch.equal(get_dataset("fmnist", "val", root=tmp_path).labels, val.labels)


def _idx_bytes(values: np.ndarray) -> bytes:
    """IDX by hand: 0, 0, type 0x08 (ubyte), ndim, big-endian int32 sizes, then the bytes."""
    head = struct.pack(">BBBB", 0, 0, 0x08, values.ndim) + struct.pack(f">{values.ndim}i", *values.shape)
    return head + values.astype(np.uint8).tobytes()


def test_read_idx_against_hand_written_bytes(tmp_path):
    values = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = _idx_bytes(values)
    (tmp_path / "x-idx3-ubyte").write_bytes(raw)
    with gzip.open(tmp_path / "x-idx3-ubyte.gz", "wb") as f:
        f.write(raw)
    assert np.array_equal(read_idx(tmp_path / "x-idx3-ubyte"), values)
    assert np.array_equal(read_idx(tmp_path / "x-idx3-ubyte.gz"), values)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "bad")


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fmnist", "FashionMNIST")])
def test_torchvision_layout_is_read_first(tmp_path, monkeypatch, name, folder):
    monkeypatch.setattr(registry, "FMNIST_DEBIAN_DIR", str(tmp_path / "no-debian"))
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    images = np.random.default_rng(0).integers(0, 256, (30, 28, 28), dtype=np.uint8)
    labels = np.arange(30) % 10
    for prefix, n in (("train", 20), ("t10k", 10)):
        start = 0 if prefix == "train" else 20
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(_idx_bytes(images[start:start + n]))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx_bytes(labels[start:start + n]))
    train, val, test = (get_dataset(name, s, root=tmp_path) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (18, 2, 10)
    assert torch.equal(test.images[:, 0], torch.from_numpy(images[20:]))
    assert torch.equal(test.labels, torch.from_numpy(labels[20:]))
    assert _rows(train) | _rows(val) == {img[None].tobytes() for img in images[:20]}


def test_missing_cifar10_says_where_and_how(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        get_dataset("cifar10", "train", root=tmp_path)
    assert isinstance(err.value, FileNotFoundError)
    assert str(tmp_path / "cifar-10-batches-py") in str(err.value) and "download=True" in str(err.value)


def test_missing_fmnist_mentions_apt_get(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "FMNIST_DEBIAN_DIR", str(tmp_path / "no-debian"))
    with pytest.raises(DatasetNotFoundError) as err:
        get_dataset("fmnist", "test", root=tmp_path)
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg and str(tmp_path / "no-debian") in msg
    assert "download=True" in msg


# --- folder:PATH --------------------------------------------------------------------------------------

def _photos(folder: Path, broken: bool = True) -> Path:
    """noise a.png, red c.bmp, grey sub/b.PNG, (a corrupt broken.jpg), and a text file."""
    (folder / "sub").mkdir(parents=True)
    noise = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "a.png")
    Image.fromarray(np.zeros((50, 20, 3), np.uint8) + np.array([255, 0, 0], np.uint8)).save(folder / "c.bmp")
    Image.fromarray(np.full((30, 30), 128, np.uint8), mode="L").save(folder / "sub" / "b.PNG")
    if broken:
        (folder / "broken.jpg").write_bytes(b"this is not a jpeg")
    (folder / "notes.txt").write_text("not an image either")
    return folder


def test_folder_crops_order_and_corrupt_file_warning(tmp_path):
    folder = _photos(tmp_path / "photos")
    with pytest.warns(UserWarning, match="skipped 1 unreadable files under"):
        data = get_dataset(f"folder:{folder}", "train", image_size=16, crops_per_image=3)
    assert data.images.shape == (9, 3, 16, 16) and data.images.dtype == torch.uint8
    assert data.labels is None and data.spec.num_classes == 0 and data.hflip
    assert data.spec == ImageSpec(3, 16, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 0)
    # sorted order a.png, (broken.jpg), c.bmp, sub/b.PNG: red crops, then grey crops converted to RGB
    red = torch.tensor([255, 0, 0], dtype=torch.uint8).view(1, 3, 1, 1)
    assert torch.equal(data.images[3:6], red.expand(3, 3, 16, 16))
    assert (data.images[6:9] == 128).all()
    assert not torch.equal(data.images[0], data.images[1])  # random crops of the noise photo differ
    with pytest.warns(UserWarning):
        again = get_dataset(f"folder:{folder}", "train", image_size=16, crops_per_image=3)
    assert torch.equal(again.images, data.images)


def test_folder_crop_counts(tmp_path):
    folder = _photos(tmp_path / "photos", broken=False)
    data = get_dataset(f"folder:{folder}", "train", image_size=8)
    assert len(data) == 3 * min(256, math.ceil(5000 / 3))  # auto: 256 per image (capped)
    many = [tmp_path / "many" / f"{i:03d}.png" for i in range(40)]
    many[0].parent.mkdir()
    for i, path in enumerate(many):
        Image.fromarray(np.full((12, 12, 3), i, np.uint8)).save(path)
    data = get_dataset(f"folder:{many[0].parent}", "train", image_size=8)
    assert len(data) == 40 * math.ceil(5000 / 40)  # auto: 125 per image
    some = get_dataset(f"folder:{many[0].parent}", "train", image_size=8, crops_per_image=2, max_images=5)
    assert some.images.shape == (10, 3, 8, 8)
    values = some.images[::2, 0, 0, 0].tolist()  # each source photo is one constant colour: its index
    assert len(set(values)) == 5 and values == sorted(values)  # 5 different photos, in sorted order


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="not a directory"):
        get_dataset(f"folder:{tmp_path / 'nowhere'}", "train")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetNotFoundError, match="no image files"):
        get_dataset(f"folder:{tmp_path / 'empty'}", "train")
    folder = _photos(tmp_path / "photos")
    with pytest.raises(ValueError, match="only split 'train'"):
        get_dataset(f"folder:{folder}", "test")


# --- adaptation ---------------------------------------------------------------------------------------

def test_adapt_rgb_to_grey_is_luma():
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    grey = adapt_images(x, ImageSpec(1, 8, (0.5,), (0.5,)))
    reference = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    assert grey.shape == (4, 1, 8, 8)
    assert torch.allclose(grey[:, 0], reference, atol=1e-6)
    src = _toy(6, channels=3)
    data = adapt(src, ImageSpec(1, 8, (0.2,), (0.3,), 10))
    r, g, b = src.images.double().unbind(1)
    assert (data.images[:, 0].double() - torch.round(0.299 * r + 0.587 * g + 0.114 * b)).abs().max() <= 1
    assert data.spec == ImageSpec(1, 8, (0.2,), (0.3,), 6)  # target's stats, source's number of classes
    assert torch.equal(data.labels, src.labels) and data.classes == src.classes


def test_adapt_grey_to_rgb_repeats_and_resize_matches_pil():
    src = _toy(3, channels=1, size=28)
    data = adapt(src, ImageSpec(3, 32, (0.5,) * 3, (0.2,) * 3))
    assert data.images.shape == (3, 3, 32, 32)
    assert torch.equal(data.images, data.images[:, :1].expand(-1, 3, -1, -1))
    x = torch.rand(2, 1, 96, 96, generator=torch.Generator().manual_seed(1))
    y = adapt_images(x, ImageSpec(1, 32, (0.5,), (0.5,)))
    for i in range(2):  # PIL's bilinear resize is antialiased: the reference
        ref = np.asarray(Image.fromarray(x[i, 0].numpy(), mode="F").resize((32, 32), Image.BILINEAR))
        assert np.allclose(y[i, 0].numpy(), ref, atol=1e-4)
    same = adapt(src, ImageSpec(1, 28, (0.1,), (0.2,)))
    assert torch.equal(same.images, src.images) and same.spec.mean == (0.1,)


# --- batching -----------------------------------------------------------------------------------------

def test_batcher_shapes_range_and_epochs():
    data = _toy(12)
    batcher = Batcher(data, batch_size=4, seed=0)
    x, y = next(batcher)
    assert x.shape == (4, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.long
    assert torch.equal(x, data.images[y].float() / 255)  # unaugmented: the stored images in [0, 1]
    epoch = torch.cat([y] + [next(batcher)[1] for _ in range(2)])
    assert sorted(epoch.tolist()) == list(range(12)) and batcher.epoch == 0
    next_epoch = torch.cat([next(batcher)[1] for _ in range(3)])
    assert sorted(next_epoch.tolist()) == list(range(12)) and batcher.epoch == 1
    assert not torch.equal(epoch, next_epoch)  # a new permutation each epoch
    odd = Batcher(_toy(10), batch_size=3, seed=0)  # 10 // 3 = 3 batches, the partial one is dropped
    first = torch.cat([next(odd)[1] for _ in range(3)])
    assert len(set(first.tolist())) == 9 and odd.epoch == 0
    next(odd)
    assert odd.epoch == 1
    with pytest.raises(ValueError, match="batch_size"):
        Batcher(data, batch_size=13, seed=0)


def _take(batcher: Batcher, k: int) -> list:
    return [next(batcher) for _ in range(k)]


def test_batcher_seeded_and_independent_of_global_rng():
    data = _toy(20, channels=3, size=8, hflip=True)
    torch.manual_seed(1)
    a = _take(Batcher(data, 5, seed=3, augment=True), 6)
    torch.manual_seed(2)
    torch.rand(7)
    b = _take(Batcher(data, 5, seed=3, augment=True), 6)
    c = _take(Batcher(data, 5, seed=4, augment=True), 6)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not all(torch.equal(ya, yc) for (_, ya), (_, yc) in zip(a, c))


def test_batcher_state_dict_round_trip():
    data = _toy(20, channels=3, hflip=True)
    batcher = Batcher(data, 6, seed=0, augment=True)
    for _ in range(4):  # into the second epoch
        next(batcher)
    buffer = io.BytesIO()
    torch.save(batcher.state_dict(), buffer)
    expected = _take(batcher, 7)
    restored = Batcher(data, 6, seed=99, augment=True)
    buffer.seek(0)
    restored.load_state_dict(torch.load(buffer))
    got = _take(restored, 7)
    assert all(torch.equal(xe, xg) and torch.equal(ye, yg) for (xe, ye), (xg, yg) in zip(expected, got))
    assert restored.epoch == batcher.epoch
    with pytest.raises(ValueError):
        Batcher(data, 5, seed=0).load_state_dict(batcher.state_dict())


@pytest.mark.parametrize("hflip", [False, True])
def test_batcher_augmentation_is_padded_crop_and_flip(hflip):
    data = _toy(16, channels=3, size=8, hflip=hflip)
    x, y = next(Batcher(data, 16, seed=0, augment=True))
    plain, _ = next(Batcher(data, 16, seed=0))
    assert x.shape == plain.shape == (16, 3, 8, 8) and not torch.equal(x, plain)
    pad = 1  # max(1, 8 // 8)
    padded = torch.nn.functional.pad(data.images.float() / 255, (pad,) * 4)  # (N, 3, 10, 10)
    flips = 0
    for xi, yi in zip(x, y):  # each image is some crop of its padded original (flipped if allowed)
        crops = [padded[yi, :, dy:dy + 8, dx:dx + 8] for dy in range(3) for dx in range(3)]
        if any(torch.equal(xi, c) for c in crops):
            continue
        assert hflip and any(torch.equal(xi, c.flip(-1)) for c in crops)
        flips += 1
    assert (flips > 0) == hflip


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batcher_same_batches_on_cuda():
    data = _toy(20, channels=3, hflip=True)
    on_cpu = _take(Batcher(data, 6, seed=0, augment=True), 5)
    on_gpu = _take(Batcher(data, 6, seed=0, augment=True, device="cuda"), 5)
    assert all(xg.is_cuda and torch.equal(xc, xg.cpu()) and torch.equal(yc, yg.cpu())
               for (xc, yc), (xg, yg) in zip(on_cpu, on_gpu))


def test_iterate_covers_everything_in_order():
    data = _toy(10)
    batches = list(iterate(data, 4))
    assert [len(x) for x, _ in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([x for x, _ in batches]), data.images.float() / 255)
    assert torch.equal(torch.cat([y for _, y in batches]), torch.arange(10))
    unlabeled = ImageData("u", "train", data.images, None, data.spec, (), False)
    assert all(y is None for _, y in iterate(unlabeled, 3))


# --- entropy selection --------------------------------------------------------------------------------

class _MeanToLogits(nn.Module):
    """Two-class logits (+s, -s) with s = 8 * (mean pixel - 0.5): most uncertain at mean 0.5."""

    def __init__(self):
        super().__init__()
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        s = 8 * (x.mean(dim=(1, 2, 3)) - 0.5)
        return torch.stack([s, -s], dim=1)


def test_entropy_subset_keeps_highest_entropy_images():
    levels = torch.tensor([0, 250, 120, 200, 128, 60, 140, 10, 128, 255])
    images = levels.view(-1, 1, 1, 1).expand(-1, 1, 8, 8).to(torch.uint8).contiguous()
    data = ImageData("const", "train", images, torch.arange(10), ImageSpec(1, 8, (0.5,), (0.5,), 10),
                     tuple(map(str, range(10))), False)
    s = 8 * (levels.double() / 255 - 0.5)
    p = torch.sigmoid(2 * s)  # softmax of (s, -s)
    entropy = -(p * p.log() + (1 - p) * (1 - p).log())
    expected = sorted(np.argsort(-entropy.numpy(), kind="stable")[:4].tolist())
    model = _MeanToLogits().train()
    chosen = entropy_subset(data, model, 4, batch_size=3)
    assert chosen.labels.tolist() == expected == [2, 4, 6, 8]
    assert model.training and model.modes and not any(model.modes)  # eval inside, mode restored
    with pytest.raises(ValueError, match="n must be"):
        entropy_subset(data, model, 11)


def test_entropy_subset_restores_the_mode_when_the_model_fails():
    class Failing(_MeanToLogits):
        def forward(self, x):
            super().forward(x)
            raise RuntimeError("boom")

    data = _toy(6)
    model = Failing().train()
    with pytest.raises(RuntimeError, match="boom"):
        entropy_subset(data, model, 2)
    assert model.training and model.modes == [False]


# --- fetch CLI ----------------------------------------------------------------------------------------

def test_fetch_already_readable(capsys):
    assert fetch.main(["digits"]) == 0
    assert "already readable" in capsys.readouterr().out
    assert fetch.main(["no-such-set"]) == 2


def test_fetch_offline_tries_then_explains(tmp_path, monkeypatch, capsys):
    def offline(name, root, train=True, download=False):
        raise DatasetNotFoundError(registry.not_found_message(name, root, download)) from OSError("offline")

    commands = []
    monkeypatch.setattr(fetch, "load_source", offline)
    monkeypatch.setattr(fetch, "_apt_usable", lambda: True)
    monkeypatch.setattr(fetch, "_run", lambda cmd: (commands.append(cmd[:2]) or False, "E: no network"))
    assert fetch.main(["cifar10", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert "torchvision download" in out.out and "failed (offline)" in out.out
    assert "download=True" in out.err and commands == []  # apt is for fmnist only
    assert fetch.main(["fmnist", "--root", str(tmp_path)]) == 1
    assert commands == [["apt-get", "install"], ["apt-get", "update"]]
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err
