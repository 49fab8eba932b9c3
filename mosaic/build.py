"""Everything a run is made of, built from its RunConfig, and the checks done before anything is built.

- ``preflight(cfg)``: every check that needs no data and no training (names, sizes, the teacher file, a
  writable out_dir), each error naming the parameter or file and what to do;
- ``build_teacher`` (cached or trained, frozen, with provenance), ``build_ood`` (the OOD images in the
  teacher's spec), ``build_players`` (student, generator, discriminator and their optimisers),
  ``build_streams`` (where the game draws real images), ``build_schedulers`` (cosine, per iteration).

``mosaic.train`` plays a run built here; the benchmarks build theirs here too, so they time the same players.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from mosaic import distributed, game
from mosaic.config import RunConfig, resolve_device
from mosaic.data import DATASETS, Batcher, ImageData, adapt, dataset_spec, entropy_subset, get_dataset, iterate
from mosaic.ema import ema_copy
from mosaic.models import Generator, check_model, get_discriminator, get_model
from mosaic.nnutil import cosine_schedule, eval_mode
from mosaic.pool import SamplePool
from mosaic.teacher import TEACHER_FILE_HELP, TeacherConfig, check_teacher_file, get_teacher, load_teacher


# ----------------------------------------------------------------------------- building a run

def teacher_config(cfg: RunConfig) -> TeacherConfig:
    """The TeacherConfig a run trains (or finds cached) when it has no ``teacher_ckpt``."""
    return TeacherConfig(dataset=cfg.dataset, arch=cfg.teacher, epochs=cfg.teacher_epochs, seed=cfg.teacher_seed,
                         data_root=cfg.data_root, download=cfg.download, threads=cfg.threads)


def build_teacher(cfg: RunConfig, device: str, progress: bool = True) -> tuple[nn.Module, dict]:
    """Load ``cfg.teacher_ckpt`` or the cached teacher (training it if needed). Frozen either way.

    Returns the teacher and its provenance (also kept on the module as ``teacher.info``, so a teacher
    passed to ``train`` keeps it): file, whether it came from the cache, training config, val/test accuracy.
    """
    if cfg.teacher_ckpt:
        return load_teacher(cfg.teacher_ckpt, device, data_root=cfg.data_root)
    return get_teacher(teacher_config(cfg), cfg.teacher_dir, device, progress)


def build_ood(cfg: RunConfig, teacher: nn.Module, device: str) -> ImageData:
    """OOD images adapted to the teacher's spec; optionally the N highest-entropy ones (paper's †)."""
    ood = adapt(get_dataset(cfg.ood, "train", root=cfg.data_root, download=cfg.download), teacher.spec)
    if cfg.ood_subset:
        ood = entropy_subset(ood, teacher, cfg.ood_subset, device=device)
    return ood


def check_r1_world(cfg: RunConfig) -> None:
    """``d_r1`` differentiates D's gradient, which this library does not do through DDP: one process only."""
    if cfg.d_r1 and distributed.world_size() > 1:
        raise ValueError(f"d_r1={cfg.d_r1} differentiates D's gradient, which this library does not do through "
                         "DistributedDataParallel: run it in one process, or set d_r1=0 under torchrun")


def build_players(cfg: RunConfig, teacher: nn.Module, device: str, parallel: bool = False) -> game.Players:
    """Student, generator and discriminator for ``cfg.method`` with their optimisers.

    ``parallel``: in a multi-process run (torchrun), the three trained players are wrapped for it
    (``distributed.wrap``: global-batch BatchNorm when ``cfg.sync_bn``, then DDP); the teacher never is.
    """
    spec = teacher.spec
    student = get_model(cfg.student, spec).to(device)  # a classifier or a segmenter, by the teacher's task
    opt_s = torch.optim.SGD(student.parameters(), lr=cfg.lr_s, momentum=cfg.momentum_s, weight_decay=cfg.wd_s)
    players = game.Players(teacher=teacher, student=student, opt_s=opt_s)
    if cfg.uses_generator:
        players.generator = Generator(spec, z_dim=cfg.z_dim, ngf=cfg.ngf).to(device)
        players.opt_g = torch.optim.Adam(players.generator.parameters(), lr=cfg.lr_g, betas=cfg.betas)
    if cfg.pool:
        if distributed.world_size() > 1:
            raise ValueError(f"RunConfig.pool={cfg.pool}: the replay pool is per process and not yet saved across "
                             "ranks, so a torchrun run could not resume exactly; run it on one process or set pool=0")
        players.pool = SamplePool(cfg.pool)
    if cfg.uses_discriminator:
        check_r1_world(cfg)  # preflight says it first; this guards direct callers that wrap for DDP
        players.discriminator = get_discriminator(cfg.discriminator, spec, patch_size=cfg.patch_size, ndf=cfg.ndf,
                                                  norm=cfg.d_norm).to(device)
        players.opt_d = torch.optim.Adam(players.discriminator.parameters(), lr=cfg.lr_d, betas=cfg.betas)
    if cfg.channels_last:
        for m in (players.teacher, players.student, players.generator, players.discriminator):  # teacher: frozen, safe
            if m is not None:
                m.to(memory_format=torch.channels_last)
    if cfg.ema_s:  # a plain frozen copy (never wrapped or compiled): rank 0 evaluates it, every rank updates its own
        players.student_ema = ema_copy(players.student)
    if parallel:  # a no-op on one process
        for name in ("student", "generator", "discriminator"):
            if getattr(players, name) is not None:
                setattr(players, name, distributed.wrap(getattr(players, name), device, cfg.sync_bn))
    if cfg.compile:  # compiled modules share parameters with the originals: optimisers and checkpoints see the same tensors
        players.student = torch.compile(players.student)
        players.generator = players.generator and torch.compile(players.generator)
        players.discriminator = players.discriminator and torch.compile(players.discriminator)
    if cfg.precision == "fp16":
        players.scalers = {k: torch.amp.GradScaler("cuda") for k in ("s", "g", "d")}
    return players


def background_prior(teacher: nn.Module, ood: ImageData, device: str, n: int = 512,
                     batch: int = 64) -> torch.Tensor:
    """The balance term's target for ``balance_bg='ood'``: class 0 (background) gets the teacher's mean
    background probability over all pixels of the first ``n`` real OOD images, the other K - 1 classes
    share the rest equally. (K,) on ``device``; deterministic (the frozen teacher in eval mode, fixed images)."""
    total, count = 0.0, 0
    with eval_mode(teacher), torch.no_grad():
        for x, _ in iterate(ood.subset(torch.arange(min(n, len(ood)))), batch, device):  # (b, C, H, W) in [0, 1]
            p = torch.softmax(teacher(x).float(), dim=1)  # (b, K, H, W)
            total, count = total + p[:, 0].sum().item(), count + p[:, 0].numel()
    k = teacher.spec.num_classes
    share = total / count
    return torch.tensor([share] + [(1 - share) / (k - 1)] * (k - 1), device=device)


def check_background(cfg: RunConfig, classes) -> None:
    """balance_bg 'free' / 'ood' need a class 0 named "background" (VOC, the scene sets; not Cityscapes, NYUv2)."""
    if cfg.balance_bg != "class" and (not classes or classes[0] != "background"):
        raise ValueError(f"balance_bg={cfg.balance_bg!r} treats class 0 as the background, and {cfg.dataset}'s class 0 "
                         f"is {classes[0] if classes else None!r}: set balance_bg='class'")


def build_streams(cfg: RunConfig, teacher: nn.Module, device: str) -> tuple[game.Streams, dict[str, Batcher], ImageData | None]:
    """Where the game draws real images: the OOD stream and/or the in-domain one, by method.

    Returns the streams, their batchers (checkpointed with the run) and the OOD images (None if unused).
    In a multi-process run every rank draws the global batch and keeps its slice (``distributed.Shard``).
    """
    shard = distributed.shard()
    streams, batchers, ood = game.Streams(shard=shard), {}, None
    if cfg.uses_ood:
        ood = build_ood(cfg, teacher, device)
        batchers["ood"] = Batcher(ood, min(cfg.batch_size, len(ood)), seed=cfg.seed + 1, augment=True, device=device)
        streams.ood = lambda: shard.take(next(batchers["ood"])[0])
    if cfg.method in ("kd_indomain", "scratch"):
        train_data = get_dataset(cfg.dataset, "train", root=cfg.data_root, download=cfg.download)
        batchers["indomain"] = Batcher(train_data, min(cfg.batch_size, len(train_data)), seed=cfg.seed + 2,
                                       augment=True, device=device)
        streams.indomain = lambda: tuple(map(shard.take, next(batchers["indomain"])))
    return streams, batchers, ood


def build_schedulers(players: game.Players, steps: int, warmup: int = 0) -> dict[str, torch.optim.lr_scheduler.LRScheduler]:
    """Cosine to 0 over ``steps`` game iterations, stepped once per iteration (all players); the student's
    lr first rises linearly over ``warmup`` iterations (RunConfig.warmup_iterations). Warm-up GAN iterations
    (RunConfig.warmup_gan) step no schedule."""
    opts = {"s": players.opt_s, "g": players.opt_g, "d": players.opt_d}
    return {k: cosine_schedule(o, steps, warmup if k == "s" else 0) for k, o in opts.items() if o is not None}


def unwrap(m: nn.Module) -> nn.Module:
    """The module itself under torch.compile and DDP wrappers (checkpoints hold the plain module's keys)."""
    return distributed.unwrap(m)


def modules(players: game.Players) -> dict[str, nn.Module]:
    """The trained players (and the student's EMA) by name (plain modules: checkpoints hold their keys); the
    teacher is not one."""
    return {k: unwrap(m) for k, m in (("student", players.student), ("generator", players.generator),
                                       ("discriminator", players.discriminator), ("student_ema", players.student_ema))
            if m is not None}


def evaluated_student(players: game.Players) -> nn.Module:
    """The student a run reports: the EMA of its weights when ``ema_s`` > 0, else the trained one (plain module)."""
    return players.student_ema if players.student_ema is not None else unwrap(players.student)


def optimizers(players: game.Players) -> dict[str, torch.optim.Optimizer]:
    """The players' optimisers by checkpoint name."""
    return {k: o for k, o in (("opt_s", players.opt_s), ("opt_g", players.opt_g), ("opt_d", players.opt_d)) if o is not None}


# ----------------------------------------------------------------------------- checks before any work

def _writable_folder(out: Path) -> None:
    """out_dir can be created and written: an existing one is a writable folder, else its nearest existing
    parent is a writable folder."""
    if out.exists():
        if not out.is_dir():
            raise ValueError(f"out_dir {out} exists and is not a folder; choose another out_dir")
        if not os.access(out, os.W_OK | os.X_OK):
            raise PermissionError(f"out_dir {out} is not writable; fix its permissions or choose another out_dir")
        return
    parent = next(p for p in out.absolute().parents if p.exists())
    if not (parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)):
        raise PermissionError(f"out_dir {out} cannot be created: {parent} is not a writable folder; "
                              "choose another out_dir")


def check_teacher_module(cfg: RunConfig, teacher: nn.Module) -> None:
    """A teacher passed to ``train`` reads the run's dataset: same channels, size and classes."""
    want, have = dataset_spec(cfg.dataset), getattr(teacher, "spec", None)
    fields = ("channels", "size", "num_classes", "task")
    if have is None or any(getattr(have, f) != getattr(want, f) for f in fields):
        raise ValueError(f"the teacher passed to train() expects {have} inputs but dataset={cfg.dataset!r} has "
                         f"{want}; pass a teacher of this dataset")


def preflight(cfg: RunConfig) -> None:
    """Every check that needs no data and no training, done before anything is created or trained.

    Dataset and architecture names, the patch discriminator's size against the teacher's input, the
    teacher file (readable, a teacher, the run's dataset / architecture / input spec), the device, and
    a writable out_dir. Each error names the parameter or file and what to do.
    """
    if cfg.dataset.startswith(("folder:", "scenes:")):
        raise ValueError(f"dataset={cfg.dataset!r}: the in-domain dataset needs labels (the teacher's task); use "
                         f"folder:PATH or scenes:NAME as ood, and one of {', '.join(n for n in DATASETS if ':' not in n)} "
                         "as dataset")
    spec = dataset_spec(cfg.dataset)  # unknown names fail here, listing the valid ones
    if not cfg.ood.startswith("folder:"):
        dataset_spec(cfg.ood)
    for role in ("teacher", "student"):
        check_model(getattr(cfg, role), spec, role)  # a known name, of the dataset's task (classifier / segmenter)
    if cfg.uses_discriminator and cfg.discriminator == "patch" and cfg.patch_size > spec.size:
        raise ValueError(f"patch_size={cfg.patch_size} is larger than the {spec.size}x{spec.size} images of "
                         f"{cfg.dataset}: choose a patch_size <= {spec.size} (or discriminator='full')")
    if cfg.balance_bg != "class" and spec.task != "segmentation":
        raise ValueError(f"balance_bg={cfg.balance_bg!r} treats class 0 as a segmentation background, and "
                         f"{cfg.dataset} is a {spec.task} task: set balance_bg='class'")
    if cfg.ood_subset and not cfg.uses_ood:
        raise ValueError(f"ood_subset={cfg.ood_subset} has no effect on method {cfg.method!r} (it sees no OOD "
                         "images); set ood_subset=0")
    if cfg.teacher_ckpt:
        if not Path(cfg.teacher_ckpt).is_file():
            raise FileNotFoundError(f"teacher_ckpt {cfg.teacher_ckpt} does not exist; {TEACHER_FILE_HELP}, "
                                    "or leave teacher_ckpt empty to train/cache one")
        check_teacher_file(cfg.teacher_ckpt, {"task": spec.task, "dataset": cfg.dataset, "arch": cfg.teacher,
                                              "channels": spec.channels, "size": spec.size,
                                              "num_classes": spec.num_classes}, data_root=cfg.data_root)
    check_r1_world(cfg)
    resolve_device(cfg.device)
    distributed.local_batch(cfg.batch_size)  # the global batch splits evenly over the processes (torchrun)
    _writable_folder(Path(cfg.out_dir))


__all__ = ["preflight", "check_r1_world", "check_teacher_module", "teacher_config", "build_teacher", "build_ood", "build_players",
           "background_prior", "check_background",
           "build_streams", "build_schedulers", "unwrap", "modules", "evaluated_student", "optimizers"]
