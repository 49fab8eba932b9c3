"""voc, cityscapes and nyuv2 read from tiny fake copies of their file layouts: sizes, label mapping,
masks resized with their images, splits, and the errors when files are missing."""
import numpy as np
import pytest
import torch
from PIL import Image

from mosaic.data import DatasetNotFoundError, dataset_spec, get_dataset


def two_halves(path, left, right, mode="L", w=40, h=20):
    """A w x h label map (or grey image) whose left half holds ``left`` and right half ``right``."""
    a = np.full((h, w), right, dtype=np.uint8)
    a[:, : w // 2] = left
    Image.fromarray(a, mode=mode if mode != "P" else "L").convert(mode).save(path)


def rgb(path, value, w=40, h=20):
    Image.fromarray(np.full((h, w, 3), value, dtype=np.uint8)).save(path)


def fake_nyuv2(root, n_train=10, n_test=3):
    for split, n in (("train", n_train), ("test", n_test)):
        (root / "NYUv2" / "image" / split).mkdir(parents=True)
        (root / "NYUv2" / "seg13" / split).mkdir(parents=True)
        for i in range(n):
            rgb(root / "NYUv2" / "image" / split / f"{i:04d}.png", 10 * i)
            two_halves(root / "NYUv2" / "seg13" / split / f"{i:04d}.png", 0, 1 + i % 13)


def test_nyuv2_from_its_folder_layout(tmp_path):
    fake_nyuv2(tmp_path)
    train, val, test = (get_dataset("nyuv2", s, root=tmp_path) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (9, 1, 3)
    assert train.spec == dataset_spec("nyuv2") and train.spec.num_classes == 13 and train.classes[0] == "bed"
    assert train.images.shape == (9, 3, 128, 128) and train.labels.shape == (9, 128, 128)
    for data in (train, val, test):
        # the 40x20 map is stretched to 128x128: left half unlabeled (0 -> 255), right half class c (c + 1 -> c)
        assert (data.labels[:, :, :64] == 255).all()
        values = (data.images[:, 0, 0, 0].long() // 10)  # file i holds grey value 10·i
        assert torch.equal(data.labels[:, :, 64:], (values % 13).to(torch.uint8).view(-1, 1, 1).expand(-1, 128, 64))


def test_nyuv2_refuses_missing_label_maps_and_other_layouts(tmp_path):
    fake_nyuv2(tmp_path)
    (tmp_path / "NYUv2" / "seg13" / "test" / "0001.png").unlink()
    with pytest.raises(DatasetNotFoundError, match="nyuv2: no readable files .*1 images of .* have no label map .*first: 0001.png"):
        get_dataset("nyuv2", "test", root=tmp_path)
    two_halves(tmp_path / "NYUv2" / "seg13" / "train" / "0002.png", 0, 40)
    with pytest.raises(ValueError, match="hold 0..13, found 40; is this the 13-class layout"):
        get_dataset("nyuv2", "train", root=tmp_path)
    with pytest.raises(DatasetNotFoundError, match="no download exists for the 13-class layout"):
        get_dataset("nyuv2", "train", root=tmp_path / "empty")


def test_voc_through_torchvision(tmp_path):
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / d).mkdir(parents=True)
    names = {"train": [f"2007_{i:06d}" for i in range(4)], "val": ["2008_000001", "2008_000002"]}
    for split, ids in names.items():
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for i, name in enumerate(ids):
            rgb(voc / "JPEGImages" / f"{name}.jpg", 50)
            two_halves(voc / "SegmentationClass" / f"{name}.png", 255, 1 + i, mode="P")  # boundary 255 | class
    train, test = get_dataset("voc", "train", root=tmp_path), get_dataset("voc", "test", root=tmp_path)
    assert len(train) + len(get_dataset("voc", "val", root=tmp_path)) == 4 and len(test) == 2
    assert test.spec.num_classes == 21 and test.classes[0] == "background" and test.hflip
    assert (test.labels[:, :, :64] == 255).all() and torch.equal(test.labels[:, 0, 64:].amax(1), torch.tensor([1, 2], dtype=torch.uint8))
    with pytest.raises(DatasetNotFoundError, match="VOCdevkit/VOC2012"):
        get_dataset("voc", "test", root=tmp_path / "empty")


def test_cityscapes_label_ids_become_train_ids(tmp_path):
    for split in ("train", "val"):
        img_dir = tmp_path / "cityscapes" / "leftImg8bit" / split / "aachen"
        gt_dir = tmp_path / "cityscapes" / "gtFine" / split / "aachen"
        img_dir.mkdir(parents=True)
        gt_dir.mkdir(parents=True)
        for i in range(2):
            stem = f"aachen_{i:06d}_000019"
            rgb(img_dir / f"{stem}_leftImg8bit.png", 100)
            two_halves(gt_dir / f"{stem}_gtFine_labelIds.png", 7, 26 if i else 0)  # road | car or unlabeled
    test = get_dataset("cityscapes", "test", root=tmp_path)
    assert test.spec.num_classes == 19 and len(test.classes) == 19 and test.classes[0] == "road"
    assert (test.labels[:, :, :64] == 0).all()  # road: label id 7 -> train id 0
    right = sorted(test.labels[:, 0, 100].tolist())
    assert right == [13, 255]  # car: id 26 -> train id 13; unlabeled: id 0 -> void
    with pytest.raises(DatasetNotFoundError, match="register at https://www.cityscapes-dataset.com"):
        get_dataset("cityscapes", "train", root=tmp_path / "empty", download=True)


def test_fetch_explains_the_datasets_it_cannot_download(tmp_path, capsys):
    from mosaic.data import fetch

    for name, hint in (("nyuv2", "no download exists for the 13-class layout"),
                       ("cityscapes", "register at https://www.cityscapes-dataset.com")):
        assert fetch.main([name, "--root", str(tmp_path)]) == 1
        out = capsys.readouterr()
        assert hint in out.err and "attempt" not in out.out  # no torchvision download is tried
    fake_nyuv2(tmp_path)
    assert fetch.main(["nyuv2", "--root", str(tmp_path)]) == 0
    assert "already readable" in capsys.readouterr().out
