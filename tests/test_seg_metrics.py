"""Segmentation metrics: confusion matrix, IoU, mIoU, pixel accuracy against a hand-computed example,
and ``evaluate`` over a small segmentation ImageData."""
import math

import pytest
import torch
from torch import nn

from mosaic import evaluate as ev
from mosaic.data import ImageData, iterate
from mosaic.spec import ImageSpec

# 2 x 3 label map with one void pixel, 3 classes (worked out by hand below)
TARGET = torch.tensor([[0, 0, 1], [1, 2, 255]])
PRED = torch.tensor([[0, 1, 1], [2, 2, 0]])
# labeled pixels (true, predicted): (0,0) (0,1) (1,1) (1,2) (2,2); the void pixel's prediction is ignored
CM = torch.tensor([[1, 1, 0],
                   [0, 1, 1],
                   [0, 0, 1]])
# IoU = TP / (row + column - TP): class 0: 1/(2+1-1), class 1: 1/(2+2-1), class 2: 1/(1+2-1)
IOU = [50.0, 100.0 / 3, 50.0]


def test_confusion_matrix_by_hand():
    assert torch.equal(ev.confusion_matrix(PRED, TARGET, 3), CM)
    assert torch.equal(ev.confusion_matrix(PRED[None], TARGET[None].to(torch.uint8), 3), CM)  # (B, H, W), uint8


def test_iou_miou_pixel_accuracy_by_hand():
    assert ev.iou_per_class(CM) == pytest.approx(IOU)
    assert ev.mean_iou(CM) == pytest.approx(sum(IOU) / 3)  # 44.44
    assert ev.pixel_accuracy(CM) == pytest.approx(60.0)  # 3 of 5 labeled pixels


def test_a_class_never_present_nor_predicted_is_left_out_of_the_mean():
    cm = ev.confusion_matrix(PRED, TARGET, 4)
    iou = ev.iou_per_class(cm)
    assert math.isnan(iou[3]) and iou[:3] == pytest.approx(IOU)
    assert ev.mean_iou(cm) == pytest.approx(sum(IOU) / 3)


def test_confusion_matrix_refuses_out_of_range_labels_and_shape_mismatch():
    with pytest.raises(ValueError, match=r"\[0, 2\) or be the void label 255"):
        ev.confusion_matrix(PRED, TARGET, 2)
    with pytest.raises(ValueError, match="one shape"):
        ev.confusion_matrix(PRED, TARGET[:1], 3)


class Oracle(nn.Module):
    """Reads the class off the pixel value (value = 40·class): logits (B, K, H, W) peaked at that class."""

    def __init__(self, k: int, wrong_class: int | None = None) -> None:
        super().__init__()
        self.k, self.wrong_class = k, wrong_class

    def forward(self, x):
        cls = (x[:, 0] * 255 / 40).round().long()  # (B, H, W)
        if self.wrong_class is not None:  # predicts class 0 wherever the truth is wrong_class
            cls = torch.where(cls == self.wrong_class, torch.zeros_like(cls), cls)
        return torch.nn.functional.one_hot(cls, self.k).permute(0, 3, 1, 2).float() * 10  # (B, K, H, W)


def scene_data(n=5, size=8, k=4):
    g = torch.Generator().manual_seed(0)
    masks = torch.randint(0, k, (n, size, size), generator=g).to(torch.uint8)
    images = (masks * 40).unsqueeze(1)  # (N, 1, H, W)
    masks[0, 0, :] = 255  # a void row: its pixels keep their drawn value, their predictions count for nothing
    spec = ImageSpec(1, size, (0.5,), (0.25,), k, task="segmentation")
    return ImageData("toy", "test", images, masks, spec, tuple("abcd"), hflip=False)


def test_evaluate_segmentation_against_a_confusion_matrix_of_all_pixels():
    data = scene_data()
    out = ev.evaluate(Oracle(4, wrong_class=2), Oracle(4), data, batch_size=2)  # task read from the spec
    y = data.labels.long()
    keep = y != 255
    wrong = (y == 2) & keep
    assert out["teacher_miou"] == pytest.approx(100.0) and out["teacher_pixel_acc"] == pytest.approx(100.0)
    assert out["teacher_per_class_iou"] == pytest.approx([100.0] * 4)
    assert out["pixel_acc"] == pytest.approx(100.0 * (1 - wrong.sum().item() / keep.sum().item()))
    # class 2 is never predicted: IoU 0; class 0 absorbs its pixels: n0 / (n0 + n2); others perfect
    n0, n2 = ((y == 0) & keep).sum().item(), wrong.sum().item()
    assert out["per_class_iou"] == pytest.approx([100.0 * n0 / (n0 + n2), 100.0, 0.0, 100.0])
    assert out["student_miou"] == pytest.approx(sum(out["per_class_iou"]) / 4)
    # agreement: the teacher's argmax (the class the pixel value encodes) as labels, on every pixel, void ones too
    drawn = data.images[:, 0].long() // 40  # (N, H, W)
    n0_all, n2_all = (drawn == 0).sum().item(), (drawn == 2).sum().item()
    assert out["agreement"] == pytest.approx((100.0 * n0_all / (n0_all + n2_all) + 100 + 0 + 100) / 4)
    assert ev.score(Oracle(4), data) == pytest.approx(100.0)
    assert ev.score(Oracle(4, wrong_class=2), data) == pytest.approx(out["student_miou"])
    assert ev.accuracy(Oracle(4, wrong_class=2), data) == pytest.approx(out["pixel_acc"])  # per labeled pixel


def test_iterate_gives_long_masks():
    x, y = next(iterate(scene_data(), 3))
    assert x.shape == (3, 1, 8, 8) and y.shape == (3, 8, 8) and y.dtype == torch.long


def test_batcher_crops_and_flips_masks_with_their_pixels():
    from dataclasses import replace

    from mosaic.data import Batcher

    data = scene_data(n=6, size=8)
    data = replace(data, images=data.images + 10, labels=(data.images[:, 0] // 40).to(torch.uint8), hflip=True)
    x, y = next(Batcher(data, 6, seed=0, augment=True))
    assert y.dtype == torch.long and y.shape == (6, 8, 8)
    value = (x[:, 0] * 255).round().long()  # (B, H, W): 0 in the zero padding, 10 + 40·class elsewhere
    pad = value == 0
    assert pad.any() and (y[pad] == 255).all()  # the padding is void
    assert torch.equal((value[~pad] - 10) // 40, y[~pad])  # every other pixel keeps its own label


def test_score_name_and_predict_masks():
    data = scene_data()
    assert ev.score_name(data.spec) == "miou" and ev.score_name(ImageSpec(1, 8, (0.5,), (0.25,), 4)) == "acc"
    x = data.images.float() / 255
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)).train()
    with torch.no_grad():
        net[1].running_mean.fill_(0.3)  # eval mode (running statistics) gives other maps than batch statistics
        ref = net.eval()(x).argmax(dim=1)  # (N, H, W)
    net.train()
    masks = ev.predict_masks(net, x, batch_size=2)
    assert masks.shape == (5, 8, 8) and masks.dtype == torch.long and torch.equal(masks, ref)
    assert net.training  # its mode is restored
    assert torch.equal(ev.predict_masks(Oracle(4), x), data.images[:, 0].long() // 40)
