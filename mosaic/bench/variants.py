"""Variants of the MosaicKD iteration and how to build one: what ``speed`` and ``parity`` run.

A variant is a path plus options, named like ``library+bf16+cl`` or ``reference+w2``:

- ``library``: the loop users run, one ``mosaic.train.iterate`` per step (``game.step``, the cosine
  schedules, the NaN guard), players from ``build_players``, schedules from ``build_schedulers``, OOD
  batches from ``build_streams``. Options: ``bf16`` / ``fp16`` (autocast), ``cl`` (channels_last),
  ``compile`` (torch.compile) -- the RunConfig fields ``precision``, ``channels_last``, ``compile``.
- ``reference``: ``mosaic.bench.reference.ReferenceLoop``, the original code's plain loop on the same
  players, followed by the same schedule steps. Options: ``w<N>`` (N DataLoader workers) and
  ``libpool`` (the library's max-pool layers instead of stock ``nn.MaxPool2d``).

``build_step`` turns a variant into a no-argument step; ``BenchSetup``/``make_setup``/``bench_inputs``
describe the speed benchmark's setting, so that each worker process builds the same iteration.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn

from mosaic import build, game, train
from mosaic.bench.pairs import CIFAR100_SPEC, PRESETS
from mosaic.bench.reference import ReferenceLoop, ood_loader
from mosaic.config import RunConfig
from mosaic.data import Batcher, ImageData, get_dataset
from mosaic.models import get_classifier
from mosaic.spec import ImageSpec
from mosaic.teacher import freeze

OPTIONS = ("bf16", "fp16", "cl", "compile")  # library options, in name order
DEFAULT_VARIANTS = ("reference", "library", "library+bf16", "library+cl", "library+bf16+cl")
QUICK_VARIANTS = ("reference", "library", "library+bf16+cl")
COMPILE_VARIANTS = ("library+compile", "library+bf16+cl+compile")

Step = Callable[[], dict[str, float]]  # one outer iteration; returns its losses


@dataclass(frozen=True)
class Variant:
    """One way of running the iteration: the reference loop or the library with some options."""

    path: str  # "reference" | "library"
    options: frozenset[str] = frozenset()  # library: a subset of OPTIONS; reference: "libpool" and at most one "w<N>"

    @property
    def name(self) -> str:
        return "+".join([self.path, *[o for o in OPTIONS if o in self.options], *sorted(self.options - set(OPTIONS))])

    @property
    def precision(self) -> str:
        return "bf16" if "bf16" in self.options else "fp16" if "fp16" in self.options else "fp32"

    @property
    def loader_workers(self) -> int | None:
        """Reference only: DataLoader workers named by a "w<N>" option (None: the setup's default)."""
        return next((int(o[1:]) for o in self.options if o.startswith("w")), None)

    def parents(self) -> list[Variant]:
        """The variants this one extends by one option (the reference for the plain library path)."""
        if self.path == "reference":
            return [Variant("reference")] if self.options else []
        if not self.options:
            return [Variant("reference")]
        return [Variant("library", self.options - {o}) for o in self.options]

    def config(self, cfg: RunConfig) -> RunConfig:
        """``cfg`` with this variant's precision, channels_last and compile (the reference: all off)."""
        return cfg.replace(precision=self.precision, channels_last="cl" in self.options,
                           compile="compile" in self.options)

    @classmethod
    def of(cls, cfg: RunConfig) -> Variant:
        """The library variant that runs ``cfg`` as it stands (its precision, channels_last, compile)."""
        flags = {"bf16": cfg.precision == "bf16", "fp16": cfg.precision == "fp16", "cl": cfg.channels_last,
                 "compile": cfg.compile}
        return cls("library", frozenset(o for o, on in flags.items() if on))


def parse_variant(name: str) -> Variant:
    """'library+bf16+cl' -> Variant('library', {'bf16', 'cl'}); option order is free.

    The reference takes "w<N>" (N DataLoader worker processes: 'reference+w2') and "libpool" (the
    library's max-pool layers instead of stock nn.MaxPool2d: 'reference+libpool').
    """
    path, *options = name.strip().split("+")
    if path == "reference":
        workers = [o for o in options if o[:1] == "w" and o[1:].isdigit()]
        if len(workers) > 1 or set(options) - set(workers) - {"libpool"} or len(set(options)) < len(options):
            raise ValueError(f"variant {name!r}: the reference takes w<N> (DataLoader workers, at most one) and "
                             "libpool (the library's pooling layers)")
    elif path == "library":
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ValueError(f"variant {name!r}: unknown option(s) {unknown}; library options are {', '.join(OPTIONS)}")
        if {"bf16", "fp16"} <= set(options):
            raise ValueError(f"variant {name!r}: choose one of bf16/fp16")
    else:
        raise ValueError(f"variant {name!r} must start with 'reference' or 'library'")
    return Variant(path, frozenset(options))


def default_variants(device: str, compile: bool = False, quick: bool = False) -> list[Variant]:
    """What ``python -m mosaic.bench speed`` measures without ``--variants``."""
    if quick:
        return [parse_variant(n) for n in QUICK_VARIANTS]
    cuda = device.startswith("cuda")
    names = ["reference", "reference+w4" if cuda else "reference+w2", "reference+libpool", *DEFAULT_VARIANTS[1:]]
    if cuda:
        names += ["library+fp16", "library+fp16+cl"]
    if compile:
        names += COMPILE_VARIANTS
    return [parse_variant(n) for n in names]


# ----------------------------------------------------------------------------- building a step

def build_step(variant: Variant, cfg: RunConfig, teacher: nn.Module, ood: ImageData | None, device: str,
               ref_workers: int = 0) -> tuple[Step, game.Players, game.Streams | ReferenceLoop]:
    """The iteration of ``variant`` as a no-argument callable, its players, and its OOD source.

    Built in ``train()``'s order (players, schedules, OOD), so the library path from a seed draws the
    same numbers as ``train()`` from that seed. ``ood``: images to draw OOD batches from instead of
    ``cfg.ood`` (the speed benchmark's synthetic set); None: the config's own (``build_streams`` /
    ``build_ood``). The OOD source is the ``game.Streams`` (library) or the ReferenceLoop (reference);
    ``PhaseClock`` times its batches, and a ReferenceLoop's ``shutdown`` stops its loader workers.
    """
    cfg = variant.config(cfg)
    players = build.build_players(cfg, teacher, device)
    schedulers = build.build_schedulers(players, cfg.steps, cfg.warmup_iterations)
    if variant.path == "library":
        if ood is None:
            streams = build.build_streams(cfg, teacher, device)[0]
        else:  # build_streams' OOD stream, over images that are no dataset
            batcher = Batcher(ood, min(cfg.batch_size, len(ood)), seed=cfg.seed + 1, augment=True, device=device)
            streams = game.Streams(ood=lambda: next(batcher)[0])
        done = 0

        def step() -> dict[str, float]:
            nonlocal done
            done += 1
            return train.iterate(players, streams, schedulers, cfg, device, done)

        return step, players, streams
    ood = build.build_ood(cfg, teacher, device) if ood is None else ood
    workers = ref_workers if variant.loader_workers is None else variant.loader_workers
    loop = ReferenceLoop(players, ood_loader(ood, cfg.batch_size, workers, pin_memory=device.startswith("cuda")),
                         cfg, device, library_pooling="libpool" in variant.options)

    def reference_step() -> dict[str, float]:  # the original loop steps its schedules too
        out = loop.step()
        for s in schedulers.values():
            s.step()
        return out

    return reference_step, players, loop


# ----------------------------------------------------------------------------- the speed benchmark's setting

@dataclass(frozen=True)
class BenchSetup:
    """Everything a worker needs to build the same iteration as every other worker (picklable)."""

    cfg: RunConfig  # the game's parameters (teacher, student, batch, kd_steps, ngf, ndf, ...)
    device: str = "cpu"
    threads: int = 0  # torch intra-op threads in each worker; 0 = torch's default
    synthetic_ood: int = 0  # >0: that many random uint8 OOD images in the teacher's spec instead of cfg.ood
    ref_workers: int = 0  # DataLoader worker processes of the reference loop
    warmup: int = 2  # untimed iterations before measuring (compile happens here)


def make_setup(preset: str = "default", device: str = "cpu", threads: int = 0, ref_workers: int = 0,
               warmup: int = 2, **overrides: Any) -> BenchSetup:
    """The setup of a preset, with RunConfig fields overridden (e.g. batch_size=16 for a tiny run)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    fields = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    synthetic = fields.get("ood") == "synthetic"
    cfg = RunConfig.from_dict({**fields, "device": device, "eval_every": 0, "ckpt_every": 0})
    return BenchSetup(cfg, device, threads, 50_000 if synthetic else 0, ref_workers, warmup)


def bench_inputs(setup: BenchSetup) -> tuple[nn.Module, ImageData | None]:
    """A frozen random-init teacher on setup.device, and the synthetic OOD images in its spec when the
    setup has some (None: the config's OOD dataset, which ``build_step`` loads)."""
    cfg = setup.cfg
    spec = CIFAR100_SPEC if cfg.dataset == "cifar100" and setup.synthetic_ood else \
        get_dataset(cfg.dataset, "test", root=cfg.data_root).spec
    torch.manual_seed(cfg.seed)
    teacher = freeze(get_classifier(cfg.teacher, spec).to(setup.device))
    if not setup.synthetic_ood:
        return teacher, None
    g = torch.Generator().manual_seed(cfg.seed)
    images = torch.randint(0, 256, (setup.synthetic_ood, spec.channels, spec.size, spec.size), generator=g,
                           dtype=torch.uint8)  # (N, C, S, S)
    return teacher, ImageData("synthetic", "train", images, None,
                              ImageSpec(spec.channels, spec.size, spec.mean, spec.std), (), hflip=True)


__all__ = ["OPTIONS", "Variant", "parse_variant", "default_variants", "build_step", "BenchSetup", "make_setup",
           "bench_inputs"]
