"""Watching a long run live: its history rows, evaluation numbers and sample grids as TensorBoard event
files in the run folder (``RunConfig.logger = "tensorboard"``; ``tensorboard --logdir runs/``).

Only rank 0 writes (``mosaic.distributed``); with ``logger="none"`` every method is a no-op. A resumed run
opens its events with ``purge_step``, so the steps replayed after the last checkpoint are not shown twice.
Logging never changes a run's numbers (``logger`` is a NEUTRAL field of RunConfig).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import torch
from torchvision.utils import make_grid


class Board:
    """A SummaryWriter on ``out_dir`` (or nothing, when ``enabled`` is False)."""

    def __init__(self, out_dir: str | Path, enabled: bool, first_step: int = 1) -> None:
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError("logger='tensorboard' needs the tensorboard package: pip install tensorboard "
                              "(or pip install -e .[all]); or set logger='none'") from err
        self.writer = SummaryWriter(str(out_dir), purge_step=first_step if first_step > 1 else None,
                                    flush_secs=30)  # live: on disk within 30 s, and at every checkpoint (flush)

    def row(self, row: Mapping[str, Any]) -> None:
        """Every number of a history row (losses, lr, val_acc) at its step."""
        if self.writer is None:
            return
        step = int(row["step"])
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key, value, step)

    def samples(self, images: torch.Tensor, step: int) -> None:
        """A grid of synthetic images (n, C, H, W) in [0, 1]."""
        if self.writer is not None:
            self.writer.add_image("samples", make_grid(images.clamp(0, 1), nrow=8, padding=1, pad_value=1.0), step)

    def metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        """The final evaluation numbers (test accuracy or mIoU, agreement, the val-selected student's) under ``final/``."""
        if self.writer is None:
            return
        for key in ("student_acc", "student_acc_valsel", "teacher_acc", "student_miou", "student_miou_valsel",
                    "teacher_miou", "pixel_acc", "agreement"):
            if isinstance(metrics.get(key), (int, float)):
                self.writer.add_scalar(f"final/{key}", metrics[key], step)

    def flush(self) -> None:
        """Put every pending event on disk: called with each checkpoint, so a SIGKILL loses no logged step that
        the checkpoint holds."""
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


__all__ = ["Board"]
