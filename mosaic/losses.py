"""The MosaicKD losses as pure functions of tensors (no modules, no state, torch only).

Notation follows the paper (Fang et al., NeurIPS 2021): x = G(z) a synthetic batch, x' real OOD
images, p_T = softmax(T(x)), p_S = softmax(S(x)), p̄ = batch mean of p_T. Each function returns a
scalar tensor; the weights (w_local, ...) are applied by the caller (``mosaic.game``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, t_kd: float = 1.0) -> torch.Tensor:
    """Hinton KD: t_kd² · KL(softmax(T/t_kd) ‖ softmax(S/t_kd)), averaged over the batch.

    student_logits, teacher_logits: (B, K). The t_kd² factor keeps gradient scale independent of t_kd.
    """
    log_p_s = F.log_softmax(student_logits.float() / t_kd, dim=1)  # (B, K)
    log_p_t = F.log_softmax(teacher_logits.float() / t_kd, dim=1)  # (B, K)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)  # (B,)
    return kl.mean() * t_kd**2


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """L_D = mean BCE(D(x'), 1) + mean BCE(D(x), 0) over batch and patch map.

    d_real, d_fake: logit maps (B, 1, h, w) of the discriminator on real OOD and synthetic images.
    Unweighted: the paper's w_local scales the generator's term only (the official code also scaled
    the D loss by it; we do not).
    """
    real = F.binary_cross_entropy_with_logits(d_real.float(), torch.ones_like(d_real, dtype=torch.float32))
    fake = F.binary_cross_entropy_with_logits(d_fake.float(), torch.zeros_like(d_fake, dtype=torch.float32))
    return real + fake


def local_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """Eq. 3, generator side: non-saturating patch GAN loss, mean BCE(D(x), 1) over the patch map.

    Every local patch of a synthetic image should look like a real OOD patch.
    """
    return F.binary_cross_entropy_with_logits(d_fake.float(), torch.ones_like(d_fake, dtype=torch.float32))


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy -Σ p log p (nats) of softmax(logits) per row, in fp32: (B, K) -> (B,)."""
    log_p = F.log_softmax(logits.float(), dim=1)  # (B, K)
    return -(log_p.exp() * log_p).sum(dim=1)


def align_loss(teacher_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 4, label-space alignment: mean entropy of p_T, so the teacher is confident on x."""
    return entropy(teacher_logits).mean()


def balance_loss(teacher_logits: torch.Tensor, batch_mean=None) -> torch.Tensor:
    """Class balance (appendix): Σ_y p̄_y log p̄_y, the negative entropy of the batch class marginal.

    Minimal (= -log K) when every in-domain class is generated equally often. ``batch_mean``: how p̄ is
    taken over the batch, (B, K) -> (K,); default the mean over dim 0 (a multi-process run passes the
    global batch's mean, ``mosaic.distributed.Shard.mean``).
    """
    p = F.softmax(teacher_logits.float(), dim=1)  # (B, K)
    p_mean = p.mean(dim=0) if batch_mean is None else batch_mean(p)  # (K,)
    return (p_mean * torch.log(p_mean.clamp_min(1e-12))).sum()


def adversarial_loss(teacher_logits: torch.Tensor, student_logits: torch.Tensor, t_kd: float = 1.0) -> torch.Tensor:
    """Eq. 7, distributionally robust term: -KL(p_T ‖ p_S) (at temperature t_kd, scaled by t_kd²).

    The generator minimises it, i.e. seeks samples where the student still disagrees with the teacher.
    """
    return -kd_loss(student_logits, teacher_logits, t_kd)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Supervised loss of the `scratch` baseline (and of teacher training)."""
    return F.cross_entropy(logits.float(), labels)


__all__ = ["kd_loss", "discriminator_loss", "local_loss", "entropy", "align_loss", "balance_loss",
           "adversarial_loss", "cross_entropy"]
