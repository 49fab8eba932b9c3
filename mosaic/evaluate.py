"""Evaluation: top-1 accuracy, teacher–student agreement and per-class accuracy on a labeled split."""
from __future__ import annotations

import torch
import torch.nn as nn

from mosaic.data import ImageData, iterate
from mosaic.nnutil import eval_mode


@torch.no_grad()
def predict(model: nn.Module, data: ImageData, batch_size: int = 512, device: str | torch.device = "cpu") -> torch.Tensor:
    """Logits of ``model`` on every image of ``data`` in order: (N, K) float32 on the CPU."""
    with eval_mode(model):
        return torch.cat([model(x).float().cpu() for x, _ in iterate(data, batch_size, device)])  # (N, K)


def accuracy(model: nn.Module, data: ImageData, batch_size: int = 512, device: str | torch.device = "cpu") -> float:
    """Top-1 accuracy in percent."""
    if data.labels is None:
        raise ValueError(f"{data.name}/{data.split} has no labels; accuracy needs a labeled split")
    pred = predict(model, data, batch_size, device).argmax(dim=1)
    return 100.0 * (pred == data.labels).float().mean().item()


def evaluate(student: nn.Module, teacher: nn.Module, data: ImageData, batch_size: int = 512,
             device: str | torch.device = "cpu") -> dict[str, object]:
    """student_acc, teacher_acc, agreement (% of images where argmaxes match), per-class student acc."""
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


__all__ = ["predict", "accuracy", "evaluate"]
