"""The MosaicKD losses as pure functions of tensors (no modules, no state, torch only).

Notation follows the paper (Fang et al., NeurIPS 2021): x = G(z) a synthetic batch, x' real OOD
images, p_T = softmax(T(x)), p_S = softmax(S(x)), p̄ = batch mean of p_T. Each function returns a
scalar tensor; the weights (w_local, ...) are applied by the caller (``mosaic.game``).

One code path for both tasks: logits are (B, K) for classification or (B, K, H, W) for dense
prediction (segmentation), classes always on dim 1. The dense terms are the per-pixel ones: KD,
entropy and the adversarial term per pixel, averaged over batch and pixels; balance over the class
marginal of all B·H·W pixels of the batch. At H = W = 1 they equal the classification terms (tested).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255  # the void label of segmentation masks (VOC's convention): no loss, no metric


def _check_logits(*logits: torch.Tensor) -> None:
    """Logits are (B, K) or (B, K, H, W), all of one shape; anything else is a caller's mistake."""
    shape = logits[0].shape
    if len(shape) not in (2, 4) or any(t.shape != shape for t in logits):
        raise ValueError("logits must be (B, K) (classification) or (B, K, H, W) (dense), all of one shape; "
                         f"got {', '.join(str(tuple(t.shape)) for t in logits)}")


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, t_kd: float = 1.0) -> torch.Tensor:
    """Hinton KD: t_kd² · KL(softmax(T/t_kd) ‖ softmax(S/t_kd)), averaged over the batch (and pixels).

    student_logits, teacher_logits: (B, K) or (B, K, H, W), the same shape. The t_kd² factor keeps
    gradient scale independent of t_kd.
    """
    _check_logits(student_logits, teacher_logits)
    log_p_s = F.log_softmax(student_logits.float() / t_kd, dim=1)  # (B, K[, H, W])
    log_p_t = F.log_softmax(teacher_logits.float() / t_kd, dim=1)  # (B, K[, H, W])
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)  # (B[, H, W])
    return kl.mean() * t_kd**2


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """The discriminator's loss on its logit maps (B, 1, h, w) of real OOD and synthetic images, averaged over
    batch and patch map.

    - ``"bce"`` (paper): mean BCE(D(x'), 1) + mean BCE(D(x), 0).
    - ``"hinge"``: mean max(0, 1 - D(x')) + mean max(0, 1 + D(x)), the margin loss of SN-GAN / BigGAN: a
      patch already on the right side of its margin gives D no gradient, so D stops sharpening what it wins.

    Unweighted: the paper's w_local scales the generator's term only (the official code also scaled
    the D loss by it; we do not).
    """
    if kind == "hinge":
        return F.relu(1 - d_real.float()).mean() + F.relu(1 + d_fake.float()).mean()
    _check_kind(kind)
    real = F.binary_cross_entropy_with_logits(d_real.float(), torch.ones_like(d_real, dtype=torch.float32))
    fake = F.binary_cross_entropy_with_logits(d_fake.float(), torch.zeros_like(d_fake, dtype=torch.float32))
    return real + fake


def local_loss(d_fake: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """Eq. 3, generator side: every local patch of a synthetic image should look like a real OOD patch.

    ``"bce"`` (paper): the non-saturating patch GAN loss, mean BCE(D(x), 1) over the patch map;
    ``"hinge"``: -mean D(x), the generator's side of the hinge game.
    """
    if kind == "hinge":
        return -d_fake.float().mean()
    _check_kind(kind)
    return F.binary_cross_entropy_with_logits(d_fake.float(), torch.ones_like(d_fake, dtype=torch.float32))


def _check_kind(kind: str) -> None:
    if kind != "bce":
        raise ValueError(f"the patch GAN's loss kind must be 'bce' or 'hinge', got {kind!r}")


def r1_penalty(d_real: torch.Tensor, x_real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al., 2018) for a patch discriminator: mean over the batch of ‖∇ₓ s(x')‖², where s is an
    image's mean patch logit, s = mean over (h, w) of D(x') (B, 1, h, w), and x_real (B, C, H, W) the real
    images D read (``requires_grad``). Differentiable (``create_graph``), so adding γ/2 · r1_penalty to D's loss
    penalises D's slope on real data. The mean over the patch map keeps γ's scale that of a one-logit D.
    """
    score = d_real.float().mean(dim=(1, 2, 3))  # (B,)
    (grad,) = torch.autograd.grad(score.sum(), x_real, create_graph=True)  # (B, C, H, W)
    return grad.float().flatten(1).pow(2).sum(dim=1).mean()


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy -Σ p log p (nats) of softmax(logits) over dim 1, in fp32: (B, K) -> (B,) per image, or
    (B, K, H, W) -> (B, H, W) per pixel."""
    log_p = F.log_softmax(logits.float(), dim=1)  # (B, K[, H, W])
    return -(log_p.exp() * log_p).sum(dim=1)


def align_loss(teacher_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 4, label-space alignment: mean entropy of p_T (per image, or per pixel for dense logits),
    so the teacher is confident on x."""
    _check_logits(teacher_logits)
    return entropy(teacher_logits).mean()


def balance_loss(teacher_logits: torch.Tensor, batch_mean=None, ignore_class: int = -1,
                 prior: torch.Tensor | None = None) -> torch.Tensor:
    """Class balance (appendix): Σ_y p̄_y log p̄_y, the negative entropy of the batch class marginal.

    Minimal (= -log K) when every in-domain class is generated equally often. Dense logits
    (B, K, H, W): p̄ is the class marginal of all B·H·W pixels of the batch. ``batch_mean``: how p̄ is
    taken over the rows (images, or pixels), (N, K) -> (K,); default the mean over dim 0 (a
    multi-process run passes the global batch's mean).

    Two variants for a segmentation task with a background class (the paper's term asks for as much
    background as each item class, where real scenes are mostly background):
    - ``ignore_class`` >= 0 leaves that class out: the negative entropy of p̄ over the other K - 1
      classes, renormalised to sum to 1 (minimal, -log(K-1), when they are equally frequent among
      themselves); the ignored class's share is free.
    - ``prior`` (K,), a distribution: KL(p̄ ‖ prior) = Σ_y p̄_y log(p̄_y / prior_y), minimal (0) at
      p̄ = prior. With a uniform prior it is the paper's term + log K.
    """
    _check_logits(teacher_logits)
    k = teacher_logits.shape[1]
    if ignore_class != -1 and not 0 <= ignore_class < k:
        raise ValueError(f"balance_loss: ignore_class={ignore_class} is not a class of these {k}-class logits; "
                         f"use -1 (every class counts) or an index in [0, {k})")
    if prior is not None and (ignore_class != -1 or prior.shape != (k,)):
        raise ValueError(f"balance_loss: prior must be a ({k},) distribution and excludes ignore_class; got "
                         f"shape {tuple(prior.shape)}, ignore_class={ignore_class}")
    p = F.softmax(teacher_logits.float(), dim=1)  # (B, K[, H, W])
    if p.dim() == 4:
        p = p.permute(0, 2, 3, 1).reshape(-1, p.shape[1])  # (B, K, H, W) -> (B·H·W, K): a row per pixel
    p_mean = p.mean(dim=0) if batch_mean is None else batch_mean(p)  # (K,)
    if ignore_class != -1:
        kept = [c for c in range(k) if c != ignore_class]
        p_mean = p_mean[kept] / p_mean[kept].sum().clamp_min(1e-12)  # (K-1,), sums to 1
    log_p = torch.log(p_mean.clamp_min(1e-12))
    if prior is not None:
        log_p = log_p - torch.log(prior.to(p_mean).clamp_min(1e-12))
    return (p_mean * log_p).sum()


def adversarial_loss(teacher_logits: torch.Tensor, student_logits: torch.Tensor, t_kd: float = 1.0) -> torch.Tensor:
    """Eq. 7, distributionally robust term: -KL(p_T ‖ p_S) (at temperature t_kd, scaled by t_kd²).

    The generator minimises it, i.e. seeks samples where the student still disagrees with the teacher.
    """
    return -kd_loss(student_logits, teacher_logits, t_kd)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Supervised loss of the `scratch` baseline (and of teacher training): mean cross-entropy.

    logits (B, K) with labels (B,), or dense logits (B, K, H, W) with label maps (B, H, W) whose
    pixels equal to ``IGNORE_INDEX`` (void) count for nothing.
    """
    if logits.dim() == 2:
        return F.cross_entropy(logits.float(), labels)
    return F.cross_entropy(logits.float(), labels.long(), ignore_index=IGNORE_INDEX)


__all__ = ["IGNORE_INDEX", "kd_loss", "discriminator_loss", "local_loss", "r1_penalty", "entropy", "align_loss", "balance_loss",
           "adversarial_loss", "cross_entropy"]
