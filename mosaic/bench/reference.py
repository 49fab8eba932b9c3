"""The reference loop: one MosaicKD iteration written the plain way the original code does it.

This is the baseline the library's ``game.step`` is measured against (``python -m mosaic.bench
speed``). It is meant to be faithful, not a strawman: the same networks, optimisers, batch size and
loss functions (``mosaic.losses``), the same phase order (D step, G step reusing x, ``kd_steps``
student steps on fresh synthetic x joined with real OOD x'). What differs is only *how* it runs,
as in the original training script:

- OOD images come from a ``torch.utils.data.DataLoader`` over a per-sample dataset that turns each
  stored image into a PIL image and applies torchvision transforms (``RandomCrop`` with zero padding,
  ``RandomHorizontalFlip`` for natural images, ``ToTensor``), then collates and moves the batch;
- fp32, eager, default memory format;
- stock torch layers: the library's ``MaxPool2x2`` (same numbers, a faster no-gradient path) is
  swapped back to ``nn.MaxPool2d(2)`` in the teacher and student (``stock_pooling``), unless
  ``library_pooling=True`` (the speed benchmark's ``reference+libpool`` variant);
- the teacher is in eval mode but *not* frozen (``requires_grad`` stays True, as the original forgot
  ``requires_grad_(False)``): the G step backpropagates into the teacher's, the student's and the
  discriminator's parameters too, and the teacher's gradients pile up, never used;
- every loss is read with its own ``.item()`` as it is computed.
"""
from __future__ import annotations

import copy
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from mosaic import losses
from mosaic.config import RunConfig
from mosaic.data import ImageData
from mosaic.game import Players
from mosaic.models.pool import MaxPool2x2


class PILImages(Dataset):
    """A torchvision-style dataset: images kept as a (N, H, W[, C]) uint8 array, one PIL image per item."""

    def __init__(self, data: ImageData, transform: Callable) -> None:
        x = data.images.permute(0, 2, 3, 1).numpy()  # (N, H, W, C), like torchvision's CIFAR .data
        self.array = np.ascontiguousarray(x[..., 0] if data.spec.channels == 1 else x)  # MNIST: (N, H, W)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(Image.fromarray(self.array[i]))  # (C, H, W) float in [0, 1]


def ood_transform(data: ImageData) -> transforms.Compose:
    """The original code's OOD augmentation, with the padding and flip rule of ``mosaic.data.Batcher``."""
    size = data.spec.size
    steps = [transforms.RandomCrop(size, padding=max(1, size // 8))]
    if data.hflip:
        steps.append(transforms.RandomHorizontalFlip())
    steps.append(transforms.ToTensor())  # no Normalize: classifiers normalise their own input
    return transforms.Compose(steps)


def ood_loader(data: ImageData, batch_size: int, num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """Shuffled PIL/transform DataLoader over the OOD images (last partial batch dropped).

    With workers, they persist across epochs (kinder to the reference than restarting them).
    """
    return DataLoader(PILImages(data, ood_transform(data)), batch_size=batch_size, shuffle=True,
                      num_workers=num_workers, pin_memory=pin_memory, drop_last=True,
                      persistent_workers=num_workers > 0)


def unfrozen_teacher(teacher: nn.Module) -> nn.Module:
    """A copy of ``teacher`` as the original code holds it: eval mode, parameters still requiring grad."""
    plain = copy.deepcopy(teacher)
    plain.frozen = False  # a plain module again: .train() works, parameters require grad
    plain.requires_grad_(True)
    return plain.eval()


def stock_pooling(module: nn.Module) -> nn.Module:
    """Swap every ``MaxPool2x2`` in ``module`` (in place) for ``nn.MaxPool2d(2)``: same values and gradients.

    LeNet keeps its pool-then-ReLU order (equal to ReLU-then-pool; see mosaic.models.lenet).
    """
    for parent in module.modules():
        for name, child in parent.named_children():
            if isinstance(child, MaxPool2x2):
                setattr(parent, name, nn.MaxPool2d(2))
    return module


class ReferenceLoop:
    """``loop.step()`` runs one plain MosaicKD iteration and returns its losses as floats.

    ``players`` gives the networks and optimisers (build them with ``mosaic.build.build_players`` at
    fp32, no channels_last, no compile); the teacher is replaced by an unfrozen copy. Unless
    ``library_pooling``, the teacher copy and the student (in place) get stock ``nn.MaxPool2d`` layers.
    """

    def __init__(self, players: Players, loader: DataLoader, cfg: RunConfig, device: str | torch.device,
                 library_pooling: bool = False) -> None:
        if cfg.method != "mosaickd" or not cfg.student_ood or players.discriminator is None:
            raise ValueError("ReferenceLoop writes out the paper's MosaicKD iteration only: method mosaickd with a "
                             f"discriminator and student_ood=True (got method={cfg.method}, student_ood="
                             f"{cfg.student_ood}, discriminator={cfg.discriminator})")
        self.teacher = unfrozen_teacher(players.teacher)
        if not library_pooling:
            stock_pooling(self.teacher)
            stock_pooling(players.student)
        self.student, self.generator, self.discriminator = players.student, players.generator, players.discriminator
        self.opt_s, self.opt_g, self.opt_d = players.opt_s, players.opt_g, players.opt_d
        self.loader, self.cfg, self.device = loader, cfg, torch.device(device)
        self._batches: Iterator[torch.Tensor] = iter(self.loader)

    def next_real(self) -> torch.Tensor:
        """The next OOD batch (B, C, H, W) on the device; a new epoch when the loader runs out."""
        try:
            x = next(self._batches)
        except StopIteration:
            self._batches = iter(self.loader)
            x = next(self._batches)
        return x.to(self.device, non_blocking=True)

    def shutdown(self) -> None:
        """Stop the loader's worker processes (if any); the next batch starts a new epoch."""
        self._batches = iter(())
        kept = getattr(self.loader, "_iterator", None)  # persistent workers live in the loader's cached iterator
        if kept is not None and hasattr(kept, "_shutdown_workers"):
            kept._shutdown_workers()
            self.loader._iterator = None

    def step(self) -> dict[str, float]:
        cfg, dev = self.cfg, self.device
        teacher, student, generator, discriminator = self.teacher, self.student, self.generator, self.discriminator
        # 1. discriminator: real OOD images -> 1, synthetic -> 0
        z = torch.randn(cfg.batch_size, cfg.z_dim, device=dev)  # (B, z_dim)
        fake = generator(z)  # (B, C, H, W), graph kept for the G step
        real = self.next_real()  # (B, C, H, W)
        loss_d = losses.discriminator_loss(discriminator(real), discriminator(fake.detach()))
        self.opt_d.zero_grad()
        loss_d.backward()
        self.opt_d.step()
        out = {"loss_d": loss_d.item()}
        # 2. generator (same x): local + align + balance + adversarial; gradients reach every network
        t_out = teacher(fake)  # (B, K)
        s_out = student(fake)  # (B, K)
        loss_local = losses.local_loss(discriminator(fake))
        loss_align = losses.align_loss(t_out)
        loss_balance = losses.balance_loss(t_out)
        loss_adv = losses.adversarial_loss(t_out, s_out, cfg.adv_temperature)
        loss_g = (cfg.w_local * loss_local + cfg.w_align * loss_align + cfg.w_balance * loss_balance
                  + cfg.w_adv * loss_adv)
        self.opt_g.zero_grad()
        loss_g.backward()
        self.opt_g.step()
        out.update(loss_g=loss_g.item(), loss_local=loss_local.item(), loss_align=loss_align.item(),
                   loss_balance=loss_balance.item(), loss_adv=loss_adv.item())
        # 3. student x kd_steps: KD on fresh synthetic images joined with real OOD images
        loss_s = []
        for _ in range(cfg.kd_steps):
            real = self.next_real()
            with torch.no_grad():
                fake = generator(torch.randn(cfg.batch_size, cfg.z_dim, device=dev))
                x = torch.cat([fake, real])  # (2B, C, H, W)
                t_out = teacher(x)
            loss = losses.kd_loss(student(x), t_out, cfg.t_kd)
            self.opt_s.zero_grad()
            loss.backward()
            self.opt_s.step()
            loss_s.append(loss.item())
        out["loss_s"] = sum(loss_s) / len(loss_s)
        return out


__all__ = ["PILImages", "ReferenceLoop", "ood_loader", "ood_transform", "stock_pooling", "unfrozen_teacher"]
