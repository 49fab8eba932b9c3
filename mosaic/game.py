"""The MosaicKD game and its baselines: one ``step`` per method, built from shared pieces.

A step is pure compute: it draws noise from torch's global RNG and real images from the callables
in ``Streams``, updates the players in place, and returns a dict of floats. It prints nothing,
writes no files and steps no scheduler (``mosaic.train`` does those).

MosaicKD, one iteration (paper Alg. 1 and the official loop order):
  1. discriminator: real OOD patches vs patches of x = G(z)              -> loss_d
  2. generator (reusing x): w_local·local + w_align·align
                            + w_balance·balance + w_adv·adv              -> loss_g
  3. student, kd_steps times: KD on fresh synthetic x ∪ real OOD x'       -> loss_s
     (with ``cfg.pool``, x is drawn from a replay memory the fresh batch joins: ``mosaic.pool``)
  D sees real and synthetic images, in 1. and in the local term of 2., through ``cfg.d_augment`` (``mosaic.augment``).

Classification and dense prediction share every line: the task lives in the logits' shape, (B, K)
or (B, K, H, W), and ``mosaic.losses`` reads it (per-pixel terms, balance over all pixels); the
generator and the patch discriminator see images either way.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
import torch.nn as nn

from mosaic import losses
from mosaic.augment import augment
from mosaic.config import RunConfig
from mosaic.distributed import Shard, without_ddp
from mosaic.pool import SamplePool

ImageStream = Callable[[], torch.Tensor]  # () -> (B, C, H, W) float in [0, 1]
LabeledStream = Callable[[], tuple[torch.Tensor, torch.Tensor]]  # () -> ((B, C, H, W), (B,) or masks (B, H, W))


@dataclass
class Players:
    """The networks of the game and their optimisers. The teacher is frozen where it is built."""

    teacher: nn.Module
    student: nn.Module
    opt_s: torch.optim.Optimizer
    generator: nn.Module | None = None
    discriminator: nn.Module | None = None
    opt_g: torch.optim.Optimizer | None = None
    opt_d: torch.optim.Optimizer | None = None
    scalers: dict[str, torch.amp.GradScaler] = field(default_factory=dict)  # fp16 only: "s", "g", "d"
    pool: SamplePool | None = None  # RunConfig.pool > 0: the student's replay memory of synthetic images
    balance_prior: torch.Tensor | None = None  # RunConfig.balance_bg == "ood": loss_balance's target (K,) (build.background_prior)
    student_ema: nn.Module | None = None  # RunConfig.ema_s > 0: the average of the student's weights (mosaic.ema),
    # updated by mosaic.train after each step and evaluated as the run's student; no step reads it


@dataclass
class Streams:
    """Where a step gets real images: OOD images (unlabeled) and, for the ceilings, in-domain ones; and
    which part of each global batch is this process's (``mosaic.distributed``; one process: all of it)."""

    ood: ImageStream | None = None
    indomain: LabeledStream | None = None
    shard: Shard = field(default_factory=Shard)


# ----------------------------------------------------------------------------- shared pieces

def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    """The one mixed-precision switch: fp32 (off), bf16 (CPU with AMX, Ampere+ GPUs), fp16 (CUDA)."""
    device_type = torch.device(device).type
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device_type != "cuda":
        raise ValueError("precision='fp16' needs a CUDA device; use 'bf16' on the CPU")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device_type, dtype=dtype)


@contextlib.contextmanager
def no_param_grads(*modules: nn.Module | None) -> Iterator[None]:
    """Let gradients flow *through* modules without computing their parameter gradients."""
    saved = [(p, p.requires_grad) for m in modules if m is not None for p in m.parameters()]
    for p, _ in saved:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


def _update(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    """zero_grad → backward → step, through the fp16 grad scaler when there is one."""
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        opt.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()


def sample_z(n: int, z_dim: int, device: torch.device | str, shard: Shard = Shard()) -> torch.Tensor:
    """Latent codes: this process's slice of n global draws (every rank draws all n, so the codes do not
    depend on the number of processes)."""
    return shard.take(torch.randn(n, z_dim, device=device))  # (n / world, z_dim)


@torch.no_grad()
def fixed_samples(generator: nn.Module, n: int, z_dim: int, device: torch.device | str, seed: int = 0) -> torch.Tensor:
    """n synthetic images from a fixed noise seed, as the student sees them during training: (n, C, H, W) on the CPU.

    The generator runs in train mode (batch-statistics BatchNorm, as in the game) on a copy, so the
    caller's generator and its running statistics are untouched; the global RNG is not used.
    """
    z = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed)).to(device)  # (n, z_dim)
    return copy.deepcopy(generator).train()(z).float().cpu()  # (n, C, H, W)


def _balance_prior(players: Players, cfg: RunConfig) -> torch.Tensor | None:
    if cfg.balance_bg != "ood":
        return None
    if players.balance_prior is None:
        raise ValueError("balance_bg='ood' needs players.balance_prior, the balance term's target: set it to "
                         "mosaic.build.background_prior(teacher, ood_images, device) (mosaic.train does)")
    return players.balance_prior


def _local_loss(players: Players, x: torch.Tensor, cfg: RunConfig) -> torch.Tensor:
    """The generator's patch term (Eq. 3): D, outside its DDP wrapper, reads x (B, C, H, W) through ``cfg.d_augment``."""
    return losses.local_loss(without_ddp(players.discriminator)(augment(x, cfg.d_augment)), cfg.d_loss)


def generator_losses(players: Players, x: torch.Tensor, cfg: RunConfig, use_local: bool,
                     shard: Shard = Shard()) -> dict[str, torch.Tensor]:
    """The generator's terms on a synthetic batch x (B, C, H, W), weighted sum in 'loss_g'.

    The student and discriminator get no parameter gradients here: they run outside their DDP wrappers.
    loss_balance's class marginal is the global batch's (``shard.mean``)."""
    t_logits = players.teacher(x)  # (B, K)
    s_logits = without_ddp(players.student)(x)  # (B, K)
    terms = {
        "loss_align": losses.align_loss(t_logits),
        "loss_balance": losses.balance_loss(t_logits, shard.mean, 0 if cfg.balance_bg == "free" else -1,
                                            _balance_prior(players, cfg)),
        "loss_adv": losses.adversarial_loss(t_logits, s_logits, cfg.adv_temperature),
    }
    loss_g = cfg.w_align * terms["loss_align"] + cfg.w_balance * terms["loss_balance"] + cfg.w_adv * terms["loss_adv"]
    if use_local:
        terms["loss_local"] = _local_loss(players, x, cfg)
        loss_g = loss_g + cfg.w_local * terms["loss_local"]
    with torch.no_grad():
        terms["teacher_conf"] = torch.softmax(t_logits.float(), dim=1).amax(dim=1).mean()
    terms["loss_g"] = loss_g
    return terms


GENERATOR_TERMS = {"loss_local": "w_local", "loss_align": "w_align", "loss_balance": "w_balance", "loss_adv": "w_adv"}


def input_grad_norms(terms: dict[str, torch.Tensor], x: torch.Tensor, cfg: RunConfig,
                     world: int = 1) -> dict[str, torch.Tensor]:
    """Which term drives the generator: for each weighted term w·L of ``terms``, the mean over the batch of
    the per-image norm of ∂(w·L)/∂x at the synthetic images x (B, C, H, W), as ``gx_local``, ``gx_align``, ...

    Read-only: the graph is kept for the generator's update, no parameter gradient is touched and no
    random number is drawn, so a run with these diagnostics has the same numbers as one without.
    Under ``world`` > 1 processes each rank's terms are means over its slice (or, for the balance term,
    its backward sums every rank's loss), so its gradients at x are ``world`` times those of one process
    holding the global batch; dividing by ``world`` reports the one-process value.
    """
    out = {}
    for key, weight_name in GENERATOR_TERMS.items():
        weight = getattr(cfg, weight_name)
        if key in terms and weight > 0:
            (g,) = torch.autograd.grad(weight * terms[key], x, retain_graph=True)  # (B, C, H, W)
            out["gx_" + key.removeprefix("loss_")] = g.detach().float().flatten(1).norm(dim=1).mean() / world
    return out


def discriminator_update(players: Players, x_real: torch.Tensor, x_fake: torch.Tensor, cfg: RunConfig,
                         amp) -> dict[str, torch.Tensor]:
    """One D step: real OOD patches → 1, synthetic patches → 0 (``cfg.d_loss``), plus ``cfg.d_r1``/2 times the
    R1 penalty on the real images when set; D sees both sets through ``cfg.d_augment`` (the R1 gradient is
    taken at the real images before it). x_fake is detached here."""
    if cfg.d_r1:
        x_real = x_real.detach().requires_grad_(True)
    with amp:
        d_real = players.discriminator(augment(x_real, cfg.d_augment))  # (B, 1, h, w)
        d_fake = players.discriminator(augment(x_fake.detach(), cfg.d_augment))  # (B, 1, h, w)
        loss_d = losses.discriminator_loss(d_real, d_fake, cfg.d_loss)
    out = {}
    if cfg.d_r1:
        out["d_r1"] = losses.r1_penalty(d_real, x_real)
        loss_d = loss_d + 0.5 * cfg.d_r1 * out["d_r1"]
    _update(loss_d, players.opt_d, players.scalers.get("d"))
    return {"loss_d": loss_d.detach(),
            "d_real": torch.sigmoid(d_real.detach().float()).mean(),  # D's mean "real" score on OOD
            "d_fake": torch.sigmoid(d_fake.detach().float()).mean(),  # ... and on synthetic patches
            **{k: v.detach() for k, v in out.items()}}


def student_kd_update(players: Players, x: torch.Tensor, cfg: RunConfig, amp) -> torch.Tensor:
    """One student step: KD towards the frozen teacher on x (B, C, H, W)."""
    with amp:
        with torch.no_grad():
            t_logits = players.teacher(x)  # (B, K) or (B, K, H, W)
        s_logits = players.student(x)  # same shape
        loss_s = losses.kd_loss(s_logits, t_logits, cfg.t_kd)
    _update(loss_s, players.opt_s, players.scalers.get("s"))
    return loss_s.detach()


def _synthesize(players: Players, n: int, cfg: RunConfig, device, shard: Shard) -> torch.Tensor:
    """A fresh synthetic batch for the student (no graph; under the run's autocast, like every forward)."""
    with torch.no_grad(), autocast(device, cfg.precision):
        return players.generator(sample_z(n, cfg.z_dim, device, shard))  # (B, C, H, W)


def _student_synthetic(players: Players, cfg: RunConfig, device, shard: Shard) -> torch.Tensor:
    """The synthetic images of one student step: a fresh batch, or (with a pool) as many drawn from the pool
    after the fresh batch joins it."""
    x = _synthesize(players, cfg.batch_size, cfg, device, shard)  # (B, C, H, W)
    if players.pool is None:
        return x
    players.pool.push(x)
    return players.pool.sample(len(x))  # (B, C, H, W)


def _floats(d: dict[str, torch.Tensor]) -> dict[str, float]:
    """Tensors → floats with a single device sync."""
    keys = list(d)
    values = torch.stack([d[k].detach().float().reshape(()) for k in keys]).tolist()
    return dict(zip(keys, values))


# ----------------------------------------------------------------------------- one step per method

def mosaickd_step(players: Players, streams: Streams, cfg: RunConfig, device, diagnose: bool = False) -> dict[str, float]:
    amp = autocast(device, cfg.precision)
    out: dict[str, torch.Tensor] = {}
    # 1. discriminator: real OOD patches vs synthetic patches (x keeps its graph for the G step)
    with amp:
        x = players.generator(sample_z(cfg.batch_size, cfg.z_dim, device, streams.shard))  # (B, C, H, W)
    use_local = players.discriminator is not None
    if use_local:
        out.update(discriminator_update(players, streams.ood(), x, cfg, amp))
    # 2. generator: mosaics the teacher reads as confident, balanced, hard for the student
    with amp, no_param_grads(players.discriminator, players.student):
        terms = generator_losses(players, x, cfg, use_local, streams.shard)
    if diagnose:
        out.update(input_grad_norms(terms, x, cfg, streams.shard.world))
    _update(terms["loss_g"], players.opt_g, players.scalers.get("g"))
    out.update({k: v.detach() for k, v in terms.items()})
    # 3. student ×kd_steps: KD on fresh synthetic samples joined with real OOD images
    loss_s = []
    for _ in range(cfg.kd_steps):
        x = _student_synthetic(players, cfg, device, streams.shard)  # (B, C, H, W)
        if cfg.student_ood:
            x = torch.cat([x, streams.ood()])  # (2B, C, H, W)
        loss_s.append(student_kd_update(players, x, cfg, amp))
    out["loss_s"] = torch.stack(loss_s).mean()
    return _floats(out)


def datafree_step(players: Players, streams: Streams, cfg: RunConfig, device, diagnose: bool = False) -> dict[str, float]:
    """Data-free baseline: the same generator without discriminator or real OOD images."""
    amp = autocast(device, cfg.precision)
    # 1. generator: align + balance + adversarial (no local term: nothing real to imitate)
    with amp, no_param_grads(players.student):
        x = players.generator(sample_z(cfg.batch_size, cfg.z_dim, device, streams.shard))  # (B, C, H, W)
        terms = generator_losses(players, x, cfg, use_local=False, shard=streams.shard)
    out = input_grad_norms(terms, x, cfg, streams.shard.world) if diagnose else {}
    _update(terms["loss_g"], players.opt_g, players.scalers.get("g"))
    out.update({k: v.detach() for k, v in terms.items()})
    # 2. student ×kd_steps on synthetic samples only
    loss_s = [student_kd_update(players, _student_synthetic(players, cfg, device, streams.shard), cfg, amp)
              for _ in range(cfg.kd_steps)]
    out["loss_s"] = torch.stack(loss_s).mean()
    return _floats(out)


def kd_ood_step(players: Players, streams: Streams, cfg: RunConfig, device, diagnose: bool = False) -> dict[str, float]:
    """Plain KD on real OOD images."""
    amp = autocast(device, cfg.precision)
    loss_s = [student_kd_update(players, streams.ood(), cfg, amp) for _ in range(cfg.kd_steps)]
    return _floats({"loss_s": torch.stack(loss_s).mean()})


def kd_indomain_step(players: Players, streams: Streams, cfg: RunConfig, device, diagnose: bool = False) -> dict[str, float]:
    """KD on in-domain train images: the ceiling OOD-KD tries to reach."""
    amp = autocast(device, cfg.precision)
    loss_s = [student_kd_update(players, streams.indomain()[0], cfg, amp) for _ in range(cfg.kd_steps)]
    return _floats({"loss_s": torch.stack(loss_s).mean()})


def scratch_step(players: Players, streams: Streams, cfg: RunConfig, device, diagnose: bool = False) -> dict[str, float]:
    """The student trained on in-domain labels, no teacher."""
    amp = autocast(device, cfg.precision)
    loss_s = []
    for _ in range(cfg.kd_steps):
        x, y = streams.indomain()  # (B, C, H, W), (B,) or masks (B, H, W)
        with amp:
            loss = losses.cross_entropy(players.student(x), y)
        _update(loss, players.opt_s, players.scalers.get("s"))
        loss_s.append(loss.detach())
    return _floats({"loss_s": torch.stack(loss_s).mean()})


def gan_warmup_step(players: Players, streams: Streams, cfg: RunConfig, device, diagnose: bool = False) -> dict[str, float]:
    """A patch-GAN iteration before the game (``cfg.warmup_gan``): the generator first learns what real OOD
    patches look like. D: real OOD patches vs synthetic ones; G: ``loss_local`` alone (no teacher, no student)."""
    amp = autocast(device, cfg.precision)
    with amp:
        x = players.generator(sample_z(cfg.batch_size, cfg.z_dim, device, streams.shard))  # (B, C, H, W)
    out = discriminator_update(players, streams.ood(), x, cfg, amp)
    with amp, no_param_grads(players.discriminator):
        loss_local = _local_loss(players, x, cfg)
    _update(loss_local, players.opt_g, players.scalers.get("g"))
    out["loss_local"] = loss_local.detach()
    return _floats(out)


STEPS: dict[str, Callable[..., dict[str, float]]] = {
    "mosaickd": mosaickd_step,
    "kd_ood": kd_ood_step,
    "datafree": datafree_step,
    "kd_indomain": kd_indomain_step,
    "scratch": scratch_step,
}


def step(players: Players, streams: Streams, cfg: RunConfig, device, warmup: bool = False,
         diagnose: bool = False) -> dict[str, float]:
    """One outer iteration of ``cfg.method`` (or, with ``warmup``, of the patch GAN alone); returns its
    losses and diagnostics as floats. ``diagnose`` adds the generator terms' gradient norms at x
    (``input_grad_norms``: ``gx_*``) where there is a generator; it changes no number of the run."""
    return (gan_warmup_step if warmup else STEPS[cfg.method])(players, streams, cfg, device, diagnose)


__all__ = ["Players", "Streams", "step", "STEPS", "autocast", "no_param_grads", "generator_losses", "input_grad_norms",
           "discriminator_update", "student_kd_update", "sample_z", "fixed_samples", "gan_warmup_step"]
