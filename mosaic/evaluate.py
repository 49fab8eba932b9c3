"""Evaluation on a labeled split.

Classification: top-1 accuracy, teacher–student agreement and per-class accuracy.
Segmentation: a confusion matrix over all labeled pixels gives mIoU, pixel accuracy and per-class
IoU; void pixels (label ``IGNORE_INDEX`` = 255) count for nothing. Every number is in percent.
``evaluate`` and ``score`` pick the task from ``data.spec.task``.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn

from mosaic.data import ImageData, iterate
from mosaic.losses import IGNORE_INDEX
from mosaic.nnutil import eval_mode


@torch.no_grad()
def predict(model: nn.Module, data: ImageData, batch_size: int = 512, device: str | torch.device = "cpu") -> torch.Tensor:
    """Logits of ``model`` on every image of ``data`` in order: (N, K) float32 on the CPU."""
    with eval_mode(model):
        return torch.cat([model(x).float().cpu() for x, _ in iterate(data, batch_size, device)])  # (N, K)


def accuracy(model: nn.Module, data: ImageData, batch_size: int = 512, device: str | torch.device = "cpu") -> float:
    """Top-1 accuracy in percent: per image, or per labeled pixel on a segmentation split (pixel accuracy)."""
    if data.labels is None:
        raise ValueError(f"{data.name}/{data.split} has no labels; accuracy needs a labeled split")
    if data.spec.task == "segmentation":
        return pixel_accuracy(segmentation_confusion({"model": model}, data, min(batch_size, 64), device)["model"])
    pred = predict(model, data, batch_size, device).argmax(dim=1)
    return 100.0 * (pred == data.labels).float().mean().item()


def evaluate(student: nn.Module, teacher: nn.Module, data: ImageData, batch_size: int = 512,
             device: str | torch.device = "cpu") -> dict[str, object]:
    """student_acc, teacher_acc, agreement (% of images where argmaxes match), per-class student acc.

    On a segmentation split: ``evaluate_segmentation``'s numbers instead.
    """
    if data.spec.task == "segmentation":
        return evaluate_segmentation(student, teacher, data, batch_size, device)
    if data.labels is None:
        raise ValueError(f"{data.name}/{data.split} has no labels; evaluation needs a labeled split")
    s = predict(student, data, batch_size, device).argmax(dim=1)  # (N,)
    t = predict(teacher, data, batch_size, device).argmax(dim=1)  # (N,)
    y = data.labels
    per_class = [100.0 * (s[y == c] == c).float().mean().item() if (y == c).any() else float("nan")
                 for c in range(data.spec.num_classes)]
    return {
        "student_acc": 100.0 * (s == y).float().mean().item(),
        "teacher_acc": 100.0 * (t == y).float().mean().item(),
        "agreement": 100.0 * (s == t).float().mean().item(),
        "per_class_acc": per_class,
    }


# ----------------------------------------------------------------------------- segmentation

def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Pixel counts (K, K) long: entry [t, p] counts pixels of true class t predicted as p.

    pred, target: integer label maps of one shape (e.g. (B, H, W)); pixels whose target is
    ``ignore_index`` are left out. A target outside [0, K) that is not void is an error.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have one shape")
    keep = target != ignore_index
    t, p = target[keep].long(), pred[keep].long()  # (n,) labeled pixels
    if t.numel() and (t.min() < 0 or t.max() >= num_classes or p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}) or be the void label {ignore_index}")
    return torch.bincount(t * num_classes + p, minlength=num_classes**2).view(num_classes, num_classes).cpu()


def iou_per_class(cm: torch.Tensor) -> list[float]:
    """IoU = TP / (TP + FP + FN) per class, in percent; NaN for a class neither present nor predicted."""
    cm = cm.double()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp  # (K,) predicted + true - both
    return [100.0 * (a / u).item() if u > 0 else float("nan") for a, u in zip(tp, union)]


def mean_iou(cm: torch.Tensor) -> float:
    """Mean IoU over the classes that are present or predicted (NaN classes left out), in percent."""
    ious = [v for v in iou_per_class(cm) if not math.isnan(v)]
    return sum(ious) / len(ious) if ious else float("nan")


def pixel_accuracy(cm: torch.Tensor) -> float:
    """Share of labeled pixels predicted right, in percent."""
    total = cm.sum().item()
    return 100.0 * cm.diag().sum().item() / total if total else float("nan")


@torch.no_grad()
def segmentation_confusion(models: dict[str, nn.Module], data: ImageData, batch_size: int = 64,
                           device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Confusion matrices over ``data`` of each model's per-pixel argmax against the masks, and, for
    two models, of the second ('teacher') taken as the labels of the first ('student') under key
    'agreement'. Logits are reduced batch by batch (never held for the whole split)."""
    if data.labels is None:
        raise ValueError(f"{data.name}/{data.split} has no masks; segmentation evaluation needs a labeled split")
    k = data.spec.num_classes
    cms = {name: torch.zeros(k, k, dtype=torch.long) for name in models}
    names = list(models)
    if len(names) == 2:
        cms["agreement"] = torch.zeros(k, k, dtype=torch.long)
    with contextlib.ExitStack() as modes:
        for m in models.values():
            modes.enter_context(eval_mode(m))
        for x, y in iterate(data, batch_size, device):
            preds = {name: m(x).argmax(dim=1) for name, m in models.items()}  # (B, K, H, W) -> (B, H, W)
            for name in names:
                cms[name] += confusion_matrix(preds[name], y, k)
            if len(names) == 2:
                cms["agreement"] += confusion_matrix(preds[names[0]], preds[names[1]], k)
    return cms


def evaluate_segmentation(student: nn.Module, teacher: nn.Module, data: ImageData, batch_size: int = 64,
                          device: str | torch.device = "cpu") -> dict[str, object]:
    """student_miou, teacher_miou, pixel_acc (student), teacher_pixel_acc, agreement (mIoU of the student
    against the teacher's argmax taken as labels, over every pixel, void ones too: both networks predict
    there), per_class_iou (student) and teacher_per_class_iou, all in percent."""
    cms = segmentation_confusion({"student": student, "teacher": teacher}, data, batch_size, device)
    return {
        "student_miou": mean_iou(cms["student"]),
        "teacher_miou": mean_iou(cms["teacher"]),
        "pixel_acc": pixel_accuracy(cms["student"]),
        "teacher_pixel_acc": pixel_accuracy(cms["teacher"]),
        "agreement": mean_iou(cms["agreement"]),
        "per_class_iou": iou_per_class(cms["student"]),
        "teacher_per_class_iou": iou_per_class(cms["teacher"]),
    }


@torch.no_grad()
def predict_masks(model: nn.Module, x: torch.Tensor, batch_size: int = 64,
                  device: str | torch.device = "cpu") -> torch.Tensor:
    """Per-pixel argmax of a segmenter on images x (B, C, H, W) in [0, 1], in eval mode (its mode restored after):
    label maps (B, H, W) long on the CPU, in batches of ``batch_size``."""
    with eval_mode(model):
        return torch.cat([model(x[k:k + batch_size].to(device)).argmax(dim=1).cpu()
                          for k in range(0, x.shape[0], batch_size)])  # (B, K, H, W) -> (B, H, W)


def score_name(spec) -> str:
    """The name of ``score``'s number for images of ``spec`` (an ``ImageSpec``): 'acc' (top-1) or 'miou'
    (segmentation). Keys built from it (``val_acc``/``val_miou``, ``student_acc_valsel``/``student_miou_valsel``)
    say which number a column holds."""
    return "miou" if spec.task == "segmentation" else "acc"


def score(model: nn.Module, data: ImageData, batch_size: int = 512, device: str | torch.device = "cpu") -> float:
    """The number a model is selected on: top-1 accuracy, or mIoU on a segmentation split (percent)."""
    if data.spec.task == "segmentation":
        return mean_iou(segmentation_confusion({"model": model}, data, min(batch_size, 64), device)["model"])
    return accuracy(model, data, batch_size, device)


__all__ = ["predict", "accuracy", "evaluate", "confusion_matrix", "iou_per_class", "mean_iou", "pixel_accuracy",
           "segmentation_confusion", "evaluate_segmentation", "predict_masks", "score", "score_name"]
