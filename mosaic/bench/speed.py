"""Speed benchmark: the library's MosaicKD iteration against a plain reference loop, in one run.

    python -m mosaic.bench speed                 # CPU default config, writes benchmarks/speed_default_cpu.{csv,md}
    python -m mosaic.bench speed --compile       # adds the torch.compile variants (compile time reported apart)
    python -m mosaic.bench speed --paper --device cuda   # the paper setting (random init, synthetic OOD)
    python -m mosaic.bench speed --quick         # a few iterations: a smoke test, numbers meaningless

What is measured. One *step* is one outer MosaicKD iteration: a D step, a G step and ``kd_steps``
student steps. The library path is ``mosaic.game.step`` with players from
``mosaic.train.build_players`` and the OOD stream from a ``mosaic.data.Batcher`` on the device; the
reference path is ``mosaic.bench.reference.ReferenceLoop`` (same networks, losses and budget, written
the way the original code runs: PIL/torchvision DataLoader, fp32, eager, teacher not frozen).
Variants of the library path add options that exist in the library: ``bf16`` (autocast), ``fp16``
(CUDA), ``cl`` (channels_last: student, generator, discriminator and teacher), ``compile``
(torch.compile of student, generator, discriminator). Under bf16/fp16 every forward runs under
autocast, the student steps' synthesis included.
The reference takes ``w<N>`` (N DataLoader worker processes) and ``libpool``: the reference
normally runs stock torch layers as the original code does (``nn.MaxPool2d``); ``libpool`` gives
it the library's exact, faster max-pool layers (``mosaic.models.pool``) instead, so the table also
shows how much of the speed-up is the loop and how much the pooling layers.

How. Every variant lives in its own worker process (clean peak memory per variant; the workers
build their players from the same seed), warms up, then the parent runs the workers one at a time
in rounds, rotating the order each round, so slow drifts of a shared machine hit every variant
alike. Reported per variant: the median over rounds of steps/s (and min, max), the median over
rounds of the ratio to the reference measured in the same round (the fastest stock reference
variant when several ran, so worker processes cannot make the baseline look slow; the note under
the table gives the ratio to ``reference+libpool`` too), the compile time (warm-up time
beyond the steady-state time of as many steps), and peak memory (CPU: the worker's peak RSS;
CUDA: ``torch.cuda.max_memory_allocated``). ``helps`` says whether adding the variant's last
option beat every variant it extends by >= 5 %.

Configurations. ``default``: the RunConfig defaults (Fashion-MNIST lenet5 -> lenet5_half, OOD
MNIST-5k, 28x28, batch 128, kd_steps 5, ngf 32, ndf 64) with a random-init teacher (speed does not
depend on its weights). ``paper``: a CIFAR-100-like spec (3x32x32, 100 classes), wrn40_2 ->
wrn16_1, batch 256, kd_steps 5, ngf 128, ndf 128, random-init networks and 50,000 random OOD images,
so it runs on a bare GPU machine (and, slowly, on a CPU with ``--steps 2``).

``train_and_evaluate`` trains either path (or any variant) for N iterations and returns the student's
test accuracy, to check that the fast path learns as well as the reference.
"""
from __future__ import annotations

import argparse
import csv
import io
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from mosaic import game
from mosaic.checkpoint import seed_everything
from mosaic.config import RunConfig, resolve_device
from mosaic.data import Batcher, ImageData, adapt, get_dataset
from mosaic.models import get_classifier
from mosaic.spec import ImageSpec
from mosaic.teacher import freeze

# the registry's CIFAR-100 spec: what a CIFAR-100 teacher expects, without needing the files
CIFAR100_SPEC = ImageSpec(3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 100)

PRESETS: dict[str, dict[str, Any]] = {  # RunConfig fields per preset (default: the RunConfig defaults)
    "default": {},
    "paper": dict(dataset="cifar100", ood="synthetic", teacher="wrn40_2", student="wrn16_1", batch_size=256,
                  kd_steps=5, ngf=128, ndf=128),
}
OPTIONS = ("bf16", "fp16", "cl", "compile")  # library options, in name order
DEFAULT_VARIANTS = ("reference", "library", "library+bf16", "library+cl", "library+bf16+cl")
QUICK_VARIANTS = ("reference", "library", "library+bf16+cl")
COMPILE_VARIANTS = ("library+compile", "library+bf16+cl+compile")
HELPS_MARGIN = 1.05  # an option "helps" when it beats every variant it extends by this factor

CSV_COLUMNS = ["timestamp", "preset", "device", "device_name", "torch", "threads", "variant", "path", "precision",
               "channels_last", "compile", "batch_size", "kd_steps", "ngf", "ndf", "warmup", "steps",
               "rounds", "steps_per_s", "steps_per_s_min", "steps_per_s_max", "ratio", "compile_s",
               "peak_mem_mb", "mem_kind", "helps"]


# ----------------------------------------------------------------------------- variants

@dataclass(frozen=True)
class Variant:
    """One way of running the iteration: the reference loop or the library with some options."""

    path: str  # "reference" | "library"
    options: frozenset[str] = frozenset()  # library: a subset of OPTIONS; reference: at most one "w<N>"

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


# ----------------------------------------------------------------------------- one benchmark setting

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


def bench_inputs(setup: BenchSetup) -> tuple[nn.Module, ImageData]:
    """A frozen random-init teacher and the OOD images in its spec (real or synthetic), on setup.device."""
    cfg = setup.cfg
    spec = CIFAR100_SPEC if cfg.dataset == "cifar100" and setup.synthetic_ood else \
        get_dataset(cfg.dataset, "test", root=cfg.data_root).spec
    torch.manual_seed(cfg.seed)
    teacher = freeze(get_classifier(cfg.teacher, spec).to(setup.device))
    if setup.synthetic_ood:
        g = torch.Generator().manual_seed(cfg.seed)
        images = torch.randint(0, 256, (setup.synthetic_ood, spec.channels, spec.size, spec.size), generator=g,
                               dtype=torch.uint8)  # (N, C, S, S)
        ood = ImageData("synthetic", "train", images, None, ImageSpec(spec.channels, spec.size, spec.mean, spec.std),
                        (), hflip=True)
    else:
        ood = adapt(get_dataset(cfg.ood, "train", root=cfg.data_root), spec)
    return teacher, ood


def build_step(variant: Variant, cfg: RunConfig, teacher: nn.Module, ood: ImageData, device: str,
               ref_workers: int = 0) -> tuple[Callable[[], dict[str, float]], game.Players, Any]:
    """The iteration of ``variant`` as a no-argument callable, its players, and its OOD source.

    The OOD source is the ``game.Streams`` (library) or the ReferenceLoop (reference).
    """
    from mosaic.train import build_players  # noqa: PLC0415  (train imports tqdm and more; only needed here)

    o = variant.options
    cfg = cfg.replace(precision=variant.precision, channels_last="cl" in o, compile="compile" in o)
    players = build_players(cfg, teacher, device)
    if variant.path == "reference":
        from mosaic.bench.reference import ReferenceLoop, ood_loader  # noqa: PLC0415  (torchvision: +200 MB RSS)

        workers = ref_workers if variant.loader_workers is None else variant.loader_workers
        loop = ReferenceLoop(players, ood_loader(ood, cfg.batch_size, workers, pin_memory=device.startswith("cuda")),
                             cfg, device, library_pooling="libpool" in o)
        return loop.step, players, loop
    batcher = Batcher(ood, cfg.batch_size, seed=cfg.seed + 1, augment=True, device=device)
    streams = game.Streams(ood=lambda: next(batcher)[0])
    return (lambda: game.step(players, streams, cfg, device)), players, streams


# ----------------------------------------------------------------------------- timing

def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class PhaseClock:
    """Splits the wall time of steps into phases without touching the step's code.

    Phase ends are the optimiser steps (post-hooks): up to ``opt_d.step`` is "D" (including x = G(z)),
    then "G" up to ``opt_g.step``, then each student step up to ``opt_s.step`` is "S"; the generator's
    no-grad forwards inside S are split out as "S_synth"; drawing OOD batches is "data"; what follows
    the last optimiser step (reading losses) is "other".
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.totals: dict[str, float] = {k: 0.0 for k in ("data", "D", "G", "S_synth", "S", "other")}
        self.steps = 0
        self._mark = 0.0
        self._inside = 0.0  # data/synth seconds inside the running phase
        self._synth_start = 0.0

    def _now(self) -> float:
        synchronize(self.device)
        return time.perf_counter()

    def attach(self, players: game.Players, source: Any) -> None:
        for opt, name in ((players.opt_d, "D"), (players.opt_g, "G"), (players.opt_s, "S")):
            opt.register_step_post_hook(lambda *_, name=name: self._lap(name))
        gen = getattr(players.generator, "_orig_mod", players.generator)
        gen.register_forward_pre_hook(lambda *_: self._synth(True))
        gen.register_forward_hook(lambda *_: self._synth(False))
        if hasattr(source, "next_real"):  # the ReferenceLoop
            source.next_real = self._timed_data(source.next_real)
        else:  # game.Streams: step() looks streams.ood up at every call
            source.ood = self._timed_data(source.ood)

    def _timed_data(self, fn: Callable) -> Callable:
        def wrapped(*args: Any) -> Any:
            t = self._now()
            out = fn(*args)
            dt = self._now() - t
            self.totals["data"] += dt
            self._inside += dt
            return out
        return wrapped

    def _synth(self, start: bool) -> None:
        if torch.is_grad_enabled():  # only the student phase's no-grad synthesis is split out
            return
        if start:
            self._synth_start = self._now()
        else:
            dt = self._now() - self._synth_start
            self.totals["S_synth"] += dt
            self._inside += dt

    def _lap(self, name: str) -> None:
        now = self._now()
        self.totals[name] += now - self._mark - self._inside
        self._mark, self._inside = now, 0.0

    def run(self, step: Callable[[], Any], n: int) -> None:
        for _ in range(n):
            self._mark, self._inside = self._now(), 0.0
            step()
            self._lap("other")
            self.steps += 1

    def per_step_ms(self) -> dict[str, float]:
        return {k: 1000 * v / max(1, self.steps) for k, v in self.totals.items()}


def peak_memory_mb(device: str) -> tuple[float, str]:
    """Peak memory of this process so far: CUDA max allocated, or the peak RSS (VmHWM) on the CPU.

    VmHWM belongs to the process image, so a spawned worker does not inherit its parent's peak (as
    ``ru_maxrss`` would across exec). DataLoader worker processes are not included.
    """
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20, "cuda_max_allocated"
    try:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024, "rss"  # kB
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss"  # KiB on Linux


# ----------------------------------------------------------------------------- worker processes

def _worker(conn, setup: BenchSetup, variant: Variant) -> None:
    """Builds one variant, warms it up, then answers ("run", n) / ("phases", n) / ("memory", _) / ("stop", _)."""
    try:
        if setup.threads:
            torch.set_num_threads(setup.threads)
        seed_everything(setup.cfg.seed)
        teacher, ood = bench_inputs(setup)
        seed_everything(setup.cfg.seed)
        step, players, source = build_step(variant, setup.cfg, teacher, ood, setup.device, setup.ref_workers)
        t = time.perf_counter()
        for _ in range(setup.warmup):
            step()
        synchronize(setup.device)
        conn.send(("ready", time.perf_counter() - t))
        while True:
            cmd, n = conn.recv()
            if cmd == "run":
                synchronize(setup.device)
                t = time.perf_counter()
                for _ in range(n):
                    out = step()
                synchronize(setup.device)
                conn.send(("ok", (time.perf_counter() - t, out)))
            elif cmd == "phases":
                clock = PhaseClock(setup.device)
                clock.attach(players, source)
                clock.run(step, n)
                conn.send(("ok", clock.per_step_ms()))
            elif cmd == "memory":
                conn.send(("ok", peak_memory_mb(setup.device)))
            else:
                conn.send(("ok", None))
                return
            if setup.device.startswith("cuda"):
                torch.cuda.empty_cache()  # idle workers should not hold the active one's memory
    except BaseException:  # noqa: BLE001  (the parent reports it)
        conn.send(("error", traceback.format_exc()))


class Worker:
    """The parent's handle on one variant's process."""

    def __init__(self, ctx, setup: BenchSetup, variant: Variant) -> None:
        self.variant = variant
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker, args=(child, setup, variant))  # not a daemon: may start loader workers
        self.process.start()
        self.warmup_s: float | None = None

    def receive(self) -> Any:
        status, value = self.conn.recv()
        if status == "error":
            raise RuntimeError(f"variant {self.variant.name} failed in its worker:\n{value}")
        return value

    def ask(self, cmd: str, n: int = 0) -> Any:
        self.conn.send((cmd, n))
        return self.receive()

    def close(self) -> None:
        try:
            self.ask("stop")
        except (EOFError, BrokenPipeError, OSError, RuntimeError):
            pass
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.kill()


# ----------------------------------------------------------------------------- the benchmark

@dataclass
class Measurement:
    variant: Variant
    seconds: list[float] = field(default_factory=list)  # one per round, for `steps` steps
    warmup_s: float = 0.0
    peak_mem_mb: float = float("nan")
    mem_kind: str = ""
    phases_ms: dict[str, float] = field(default_factory=dict)
    last_losses: dict[str, float] = field(default_factory=dict)


def measure(setup: BenchSetup, variants: list[Variant], steps: int, rounds: int, phase_steps: int = 0,
            log: Callable[[str], None] = print) -> list[Measurement]:
    """Run every variant ``rounds`` times for ``steps`` steps, one worker at a time, rotating the order."""
    ctx = mp.get_context("spawn")
    workers = [Worker(ctx, setup, v) for v in variants]
    results = {w.variant: Measurement(w.variant) for w in workers}
    try:
        for w in workers:  # they build and warm up in parallel; collect in order
            results[w.variant].warmup_s = w.receive()
            log(f"  {w.variant.name}: ready (warm-up {results[w.variant].warmup_s:.1f} s)")
        for r in range(rounds):
            k = r % len(workers)
            for w in workers[k:] + workers[:k]:
                seconds, losses = w.ask("run", steps)
                results[w.variant].seconds.append(seconds)
                results[w.variant].last_losses = losses
            log(f"  round {r + 1}/{rounds}: " + ", ".join(f"{m.variant.name} {steps / m.seconds[-1]:.3f}"
                                                         for m in results.values()) + " steps/s")
        if phase_steps:
            for w in workers:
                results[w.variant].phases_ms = w.ask("phases", phase_steps)
        for w in workers:
            results[w.variant].peak_mem_mb, results[w.variant].mem_kind = w.ask("memory")
    finally:
        for w in workers:
            w.close()
    return [results[v] for v in variants]


def baseline(measurements: list[Measurement]) -> Measurement | None:
    """The fastest stock reference variant (no libpool), else the fastest reference, else None."""
    refs = [m for m in measurements if m.variant.path == "reference"]
    stock = [m for m in refs if "libpool" not in m.variant.options] or refs
    return min(stock, key=lambda m: statistics.median(m.seconds), default=None)


def same_round_ratio(fast: Measurement, slow: Measurement) -> float:
    """Median over rounds of slow's time / fast's time in the same round."""
    return statistics.median([s / f for f, s in zip(fast.seconds, slow.seconds)])


def summarize(measurements: list[Measurement], steps: int, warmup: int) -> list[dict[str, Any]]:
    """One row per variant: median/min/max steps/s, median same-round ratio to the reference, helps."""
    ref = baseline(measurements)
    rows = []
    for m in measurements:
        rates = [steps / s for s in m.seconds]
        steady = statistics.median(m.seconds) / steps
        rows.append({"variant": m.variant.name, "path": m.variant.path, "precision": m.variant.precision,
                     "channels_last": "cl" in m.variant.options, "compile": "compile" in m.variant.options,
                     "steps_per_s": statistics.median(rates), "steps_per_s_min": min(rates),
                     "steps_per_s_max": max(rates), "ratio": same_round_ratio(m, ref) if ref else float("nan"),
                     "compile_s": max(0.0, m.warmup_s - warmup * steady) if "compile" in m.variant.options else 0.0,
                     "peak_mem_mb": m.peak_mem_mb, "mem_kind": m.mem_kind})
    by_name = {r["variant"]: r for r in rows}
    for m, row in zip(measurements, rows):
        parents = [by_name[p.name]["ratio"] for p in m.variant.parents() if p.name in by_name]
        row["helps"] = "" if not parents else \
            "yes" if row["ratio"] >= HELPS_MARGIN * max(parents) else "no"
    return rows


def libpool_notes(measurements: list[Measurement]) -> list[str]:
    """The fastest library variant against reference+libpool (the reference with the library's pooling layers)."""
    by_name = {m.variant.name: m for m in measurements}
    libs = [m for m in measurements if m.variant.path == "library"]
    if "reference+libpool" not in by_name or not libs:
        return []
    best = min(libs, key=lambda m: statistics.median(m.seconds))
    return [f"against reference+libpool (the reference with the library's max-pool layers, which the stock reference "
            f"does not have) {best.variant.name} is {same_round_ratio(best, by_name['reference+libpool']):.2f}x"]


def machine() -> dict[str, str]:
    """What the numbers were measured on (for the CSV and the markdown header)."""
    name = platform.processor() or platform.machine()
    try:
        name = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": name, "cores": str(os.cpu_count()), "torch": torch.__version__,
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"}


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else machine()["cpu"]


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()})
    return buf.getvalue()


def to_markdown(rows: list[dict[str, Any]], title: str, notes: list[str]) -> str:
    lines = [f"### {title}", "", *[f"- {n}" for n in notes], "",
             "| variant | steps/s (median) | min – max | × reference | helps | compile s | peak memory MB |",
             "|---|---:|---:|---:|:-:|---:|---:|"]
    for r in rows:
        compile_s = f"{r['compile_s']:.1f}" if r["compile"] else "—"
        lines.append(f"| {r['variant']} | {r['steps_per_s']:.3f} | {r['steps_per_s_min']:.3f} – "
                     f"{r['steps_per_s_max']:.3f} | {r['ratio']:.2f} | {r['helps'] or '—'} | {compile_s} | "
                     f"{r['peak_mem_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def phases_markdown(measurements: list[Measurement]) -> str:
    keys = ("data", "D", "G", "S_synth", "S", "other")
    lines = ["| variant | " + " | ".join(keys) + " | total |", "|---|" + "---:|" * (len(keys) + 1)]
    for m in measurements:
        if m.phases_ms:
            lines.append(f"| {m.variant.name} | " + " | ".join(f"{m.phases_ms[k]:.0f}" for k in keys)
                         + f" | {sum(m.phases_ms.values()):.0f} |")
    return "ms per step, by phase (D includes x = G(z); S_synth = the student steps' no-grad G forwards; "\
           "S = the rest of the student steps)\n\n" + "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- accuracy of either path

def train_and_evaluate(path: str, cfg: RunConfig, steps: int, seed: int = 0, ref_workers: int = 0,
                       teacher: nn.Module | None = None) -> dict[str, Any]:
    """Train a student for ``steps`` iterations along ``path``; return its test accuracy and speed.

    ``path``: "reference" (the plain loop, fp32 eager), "library" (``game.step`` with cfg's
    precision / channels_last / compile) or a variant name such as "library+bf16+cl".
    Both get the same teacher (``teacher``, else cfg's cached one), OOD images (``build_ood``), init
    (``seed``), cosine schedules and budget. Returns student_acc (test split, %), wall_s, steps_per_s
    and the last step's losses.
    """
    from mosaic.evaluate import accuracy  # noqa: PLC0415
    from mosaic.train import build_ood, build_schedulers, build_teacher  # noqa: PLC0415

    if path == "library":
        flags = {"bf16": cfg.precision == "bf16", "fp16": cfg.precision == "fp16", "cl": cfg.channels_last,
                 "compile": cfg.compile}
        variant = Variant("library", frozenset(o for o, on in flags.items() if on))
    else:
        variant = parse_variant(path)
    device = resolve_device(cfg.device)
    cfg = cfg.replace(steps=steps, seed=seed, device=device)
    if teacher is None:
        teacher, _ = build_teacher(cfg, device, progress=False)
    seed_everything(seed)
    ood = build_ood(cfg, teacher, device)
    step, players, source = build_step(variant, cfg, teacher, ood, device, ref_workers)
    schedulers = build_schedulers(players, steps)
    t = time.perf_counter()
    for _ in range(steps):
        out = step()
        for s in schedulers.values():
            s.step()
    synchronize(device)
    wall_s = time.perf_counter() - t
    if hasattr(source, "shutdown"):  # the ReferenceLoop's DataLoader workers
        source.shutdown()
    test = get_dataset(cfg.dataset, "test", root=cfg.data_root, download=cfg.download)
    return {"path": path, "variant": variant.name, "seed": seed, "steps": steps,
            "student_acc": accuracy(players.student, test, device=device), "wall_s": wall_s,
            "steps_per_s": steps / wall_s, **out}


# ----------------------------------------------------------------------------- command line

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mosaic.bench speed", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--paper", action="store_true", help="paper preset: wrn40_2->wrn16_1, 3x32x32, batch 256, "
                   "ngf/ndf 128, random init, synthetic OOD")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 warm-up, 1 step, 1 round, 3 variants")
    p.add_argument("--steps", type=int, default=None, help="timed iterations per variant per round (default 5)")
    p.add_argument("--rounds", type=int, default=None, help="rounds, order rotated each round (default 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed iterations first (default 2)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: torch's default)")
    p.add_argument("--variants", default=None, help="comma-separated, e.g. reference,library,library+bf16+cl "
                   f"(options: {', '.join(OPTIONS)})")
    p.add_argument("--compile", action="store_true", help="add the torch.compile variants")
    p.add_argument("--phases", type=int, default=0, metavar="N", help="also time N steps per variant by phase")
    p.add_argument("--ref-workers", type=int, default=0, help="DataLoader workers of the reference loop")
    for name in ("batch_size", "kd_steps", "ngf", "ndf", "z_dim", "seed"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=None, help=f"override RunConfig.{name}")
    p.add_argument("--out", default="benchmarks", help="folder for speed_<preset>_<device>.{csv,md}")
    return p


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    device = resolve_device(a.device)
    preset = "paper" if a.paper else "default"
    steps = a.steps or (1 if a.quick else 5)
    rounds = a.rounds or (1 if a.quick else 3)
    warmup = a.warmup if a.warmup is not None else (1 if a.quick else 2)
    setup = make_setup(preset, device, a.threads, a.ref_workers, warmup, batch_size=a.batch_size,
                       kd_steps=a.kd_steps, ngf=a.ngf, ndf=a.ndf, z_dim=a.z_dim, seed=a.seed)
    variants = [parse_variant(n) for n in a.variants.split(",")] if a.variants else \
        default_variants(device, a.compile, a.quick)
    cfg, info = setup.cfg, machine()
    threads = a.threads or torch.get_num_threads()
    print(f"speed benchmark ({preset}{', quick' if a.quick else ''}) on {device} ({device_name(device)}), "
          f"{threads} threads, load {info['load']}: {cfg.teacher}->{cfg.student}, batch {cfg.batch_size}, "
          f"kd_steps {cfg.kd_steps}, ngf {cfg.ngf}, ndf {cfg.ndf}; {warmup} warm-up + {rounds} x {steps} steps")
    t0 = time.perf_counter()
    measurements = measure(setup, variants, steps, rounds, a.phases)
    rows = summarize(measurements, steps, warmup)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    common = {"timestamp": stamp, "preset": preset, "device": device, "device_name": device_name(device),
              "torch": torch.__version__, "threads": threads, "batch_size": cfg.batch_size, "kd_steps": cfg.kd_steps,
              "ngf": cfg.ngf, "ndf": cfg.ndf, "warmup": warmup, "steps": steps, "rounds": rounds}
    rows = [{**common, **r} for r in rows]
    ood = f"synthetic x{setup.synthetic_ood}" if setup.synthetic_ood else cfg.ood
    base = baseline(measurements)
    base_name = base.variant.name if base else "nothing (no reference ran)"
    command = " ".join(["python -m mosaic.bench speed", *(sys.argv[1:] if argv is None else argv)])
    notes = [f"`{command}`",
             f"{stamp}, {device} ({device_name(device)}), {threads} threads, torch {torch.__version__}, "
             f"load average {info['load']} at start, {machine()['load']} at end",
             f"{cfg.teacher} -> {cfg.student}, OOD {ood}, batch {cfg.batch_size}, kd_steps {cfg.kd_steps}, ngf "
             f"{cfg.ngf}, ndf {cfg.ndf}; one step = D + G + {cfg.kd_steps} student steps; {warmup} warm-up, "
             f"{rounds} rounds x {steps} steps, ratio = median of same-round ratios to {base_name}",
             f"peak memory: {rows[0]['mem_kind']} of the variant's own process (DataLoader workers, if any, not included)"]
    notes += libpool_notes(measurements)
    title = f"speed: {preset}{' (quick)' if a.quick else ''}, {device}"
    md = to_markdown(rows, title, notes)
    if a.phases:
        md += "\n" + phases_markdown(measurements)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"speed_{preset}{'_quick' if a.quick else ''}_{torch.device(device).type}"
    (out / f"{stem}.csv").write_text(to_csv(rows))
    (out / f"{stem}.md").write_text(md)
    print(md)
    print(f"wrote {out / stem}.csv and .md ({time.perf_counter() - t0:.0f} s)")
    return 0


__all__ = ["Variant", "parse_variant", "default_variants", "BenchSetup", "make_setup", "bench_inputs", "build_step",
           "PhaseClock", "measure", "summarize", "train_and_evaluate", "main",
           "CIFAR100_SPEC", "PRESETS", "CSV_COLUMNS"]
