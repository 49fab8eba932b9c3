"""Scene composition (mosaic.data.scenes) and the scene datasets of the registry:
labels match pixels, splits are disjoint and seeded, shapes and specs."""
import pytest
import torch

from mosaic.data import DATASETS, DatasetNotFoundError, dataset_spec, get_dataset
from mosaic.data.registry import SCENE_COUNTS
from mosaic.data.scenes import compose_scenes
from mosaic.data.photos import write_sample_photos


def toy_items(m=6, c=1, h=5, w=4, seed=0):
    """Items with a black border and a distinct non-zero interior value per item (value = 10 + 20·i)."""
    items = torch.zeros(m, c, h, w, dtype=torch.uint8)
    for i in range(m):
        items[i, :, 1:-1, 1:-1] = 10 + 20 * i
    return items, torch.arange(m) % 3  # classes 0, 1, 2, 0, 1, 2


def replay(items, labels, layout, size):
    """The layout pasted again one item at a time with plain Python loops (the reference)."""
    n = layout["count"].shape[0]
    c = items.shape[1]
    images = torch.zeros(n, c, size, size, dtype=torch.uint8)
    masks = torch.zeros(n, size, size, dtype=torch.uint8)
    for s in range(n):
        for j in range(int(layout["count"][s])):
            item = items[layout["index"][s, j]]
            t, l = int(layout["top"][s, j]), int(layout["left"][s, j])
            for y in range(item.shape[1]):
                for x in range(item.shape[2]):
                    if item[:, y, x].max() > 0:
                        images[s, :, t + y, l + x] = item[:, y, x]
                        masks[s, t + y, l + x] = labels[layout["index"][s, j]] + 1
    return images, masks


def test_scenes_match_a_pixel_by_pixel_replay_of_their_layout_later_items_on_top():
    items, labels = toy_items()
    images, masks, layout = compose_scenes(items, labels, n=20, size=12, seed=3)
    assert images.shape == (20, 1, 12, 12) and masks.shape == (20, 12, 12) and masks.dtype == torch.uint8
    assert ((layout["count"] >= 2) & (layout["count"] <= 4)).all()
    ref_images, ref_masks = replay(items, labels, layout, 12)
    assert torch.equal(images, ref_images) and torch.equal(masks, ref_masks)


def test_labels_match_pixels():
    items, labels = toy_items()
    images, masks, layout = compose_scenes(items, labels, n=200, size=12, seed=0)
    value = images[:, 0].long()  # (N, H, W): 10 + 20·item on item pixels, 0 on background
    assert torch.equal(masks == 0, value == 0)  # background <=> black
    item_of_pixel = (value[masks > 0] - 10) // 20
    assert torch.equal(labels[item_of_pixel] + 1, masks[masks > 0].long())  # label = class of the painted item
    # some items overlap (fewer labeled pixels than the items' 3x2 interiors), and there the replay above
    # (later items painted over earlier ones) agrees too
    assert ((masks > 0).flatten(1).sum(1) < 6 * layout["count"]).any()


def test_scenes_are_seeded():
    items, labels = toy_items()
    a = compose_scenes(items, labels, n=30, size=12, seed=1)
    b = compose_scenes(items, labels, n=30, size=12, seed=1)
    c = compose_scenes(items, labels, n=30, size=12, seed=2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_rgb_items_and_unlabeled_scenes():
    items = torch.zeros(3, 3, 4, 4, dtype=torch.uint8)
    items[:, 2] = 200  # only the blue channel is non-zero: the whole square is the item
    images, masks, _ = compose_scenes(items, None, n=5, size=8, seed=0)
    assert masks is None and images.shape == (5, 3, 8, 8)
    assert (images[:, :2] == 0).all() and (images[:, 2] > 0).any()


def test_compose_refuses_items_larger_than_the_canvas():
    items, labels = toy_items(h=9)
    with pytest.raises(ValueError, match="no larger than the 8x8 canvas"):
        compose_scenes(items, labels, n=2, size=8)


# --- the registry ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fmnist_scenes():
    try:
        return {s: get_dataset("fmnist_scenes", s) for s in ("train", "val", "test")}
    except DatasetNotFoundError:
        pytest.skip("needs Fashion-MNIST (data/FashionMNIST or apt-get install dataset-fashion-mnist)")


def test_fmnist_scenes_spec_shapes_and_classes(fmnist_scenes):
    spec = dataset_spec("fmnist_scenes")
    assert spec.task == "segmentation" and spec.num_classes == 11 and (spec.channels, spec.size) == (1, 64)
    for split, data in fmnist_scenes.items():
        assert len(data) == SCENE_COUNTS[split] and data.spec == spec
        assert data.images.shape[1:] == (1, 64, 64) and data.labels.shape[1:] == (64, 64)
        assert int(data.labels.max()) <= 10 and data.classes[0] == "background" and len(data.classes) == 11
        assert torch.equal(data.labels == 0, data.images[:, 0] == 0)  # background <=> black pixel
    train = fmnist_scenes["train"]
    x = train.images.float().div(255)
    assert x.mean().item() == pytest.approx(spec.mean[0], abs=1e-4)  # the spec's statistics are measured
    assert x.std(unbiased=False).item() == pytest.approx(spec.std[0], abs=1e-4)
    assert repr(train) == "ImageData(fmnist_scenes/train: 10000 x 1x64x64, 11 classes, masks)"


def test_fmnist_scenes_splits_use_disjoint_items_and_are_seeded(fmnist_scenes):
    def item_rows(split):  # the fmnist items a split's scenes are made of
        return {bytes(row) for row in get_dataset("fmnist", split).images.flatten(1).numpy()}

    train, val, test = item_rows("train"), item_rows("val"), item_rows("test")
    assert not (train & val) and not (val & test)  # (duplicate images inside fmnist aside)
    assert len(train & test) < 20
    again = get_dataset("fmnist_scenes", "val")
    assert torch.equal(again.images, fmnist_scenes["val"].images) and torch.equal(again.labels, fmnist_scenes["val"].labels)
    assert not torch.equal(fmnist_scenes["val"].images[:100], fmnist_scenes["test"].images[:100])


def test_ood_scenes_from_a_classification_set_and_a_folder(tmp_path):
    ood = get_dataset("scenes:mnist5k", "train", n=40)
    assert ood.labels is None and ood.images.shape == (40, 1, 64, 64) and ood.spec.num_classes == 0
    assert dataset_spec("scenes:mnist5k").size == 64 and "scenes:NAME" in DATASETS
    again = get_dataset("scenes:mnist5k", "train", n=40)
    assert torch.equal(ood.images, again.images)
    folder = write_sample_photos(tmp_path / "photos")  # a clean clone has no data/skimage_photos yet
    photos = get_dataset(f"scenes:folder:{folder}", "train", n=10, size=48)
    assert photos.images.shape == (10, 3, 48, 48) and dataset_spec("scenes:folder:x").channels == 3
    with pytest.raises(ValueError, match="items come from a classification dataset or folder:PATH"):
        get_dataset("scenes:fmnist_scenes", "train")
    with pytest.raises(DatasetNotFoundError, match="is not a directory"):
        get_dataset("scenes:folder:/no/such/folder", "train")


def test_missing_fashion_mnist_says_what_fmnist_scenes_needs(tmp_path, monkeypatch):
    from mosaic.data import registry

    monkeypatch.setattr(registry, "FMNIST_DEBIAN_DIR", str(tmp_path / "none"))
    with pytest.raises(DatasetNotFoundError, match="fmnist_scenes is composed from Fashion-MNIST items"):
        get_dataset("fmnist_scenes", "test", root=tmp_path)
