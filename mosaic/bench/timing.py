"""How the speed benchmark times variants: one worker process per variant, rounds, a phase clock.

``measure`` starts one spawned worker per variant (clean peak memory per variant; every worker
builds its players from the same seed with ``variants.build_step``), lets them warm up, then asks
them one at a time, round after round, to run N steps, rotating the order each round so slow drifts
of a shared machine hit every variant alike. ``PhaseClock`` splits steps into phases (data, D, G,
student) through optimiser hooks, without touching the step's code. ``peak_memory_mb``,
``machine`` and ``device_name`` say what the numbers were measured on.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import platform
import resource
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

import torch

from mosaic import game
from mosaic.bench.variants import BenchSetup, Variant, bench_inputs, build_step
from mosaic.checkpoint import seed_everything

PHASES = ("data", "D", "G", "S_synth", "S", "other")


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class PhaseClock:
    """Splits the wall time of steps into phases without touching the step's code.

    Phase ends are the optimiser steps (post-hooks): up to ``opt_d.step`` is "D" (including x = G(z)),
    then "G" up to ``opt_g.step``, then each student step up to ``opt_s.step`` is "S"; the generator's
    no-grad forwards inside S are split out as "S_synth"; drawing OOD batches is "data"; what follows
    the last optimiser step (reading losses, the schedules) is "other".
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.totals: dict[str, float] = {k: 0.0 for k in PHASES}
        self.steps = 0
        self._mark = 0.0
        self._inside = 0.0  # data/synth seconds inside the running phase
        self._synth_start = 0.0

    def _now(self) -> float:
        synchronize(self.device)
        return time.perf_counter()

    def attach(self, players: game.Players, source: Any) -> None:
        """Hook ``players``' optimisers and generator, and wrap ``source``'s OOD draws (Streams or ReferenceLoop)."""
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


# ----------------------------------------------------------------------------- worker processes

def _worker(conn: Connection, setup: BenchSetup, variant: Variant) -> None:
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
                    step()
                synchronize(setup.device)
                conn.send(("ok", time.perf_counter() - t))
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

    def __init__(self, ctx: Any, setup: BenchSetup, variant: Variant) -> None:
        self.variant = variant
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker, args=(child, setup, variant))  # not a daemon: may start loader workers
        self.process.start()

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


# ----------------------------------------------------------------------------- the measurement

@dataclass
class Measurement:
    variant: Variant
    seconds: list[float] = field(default_factory=list)  # one per round, for `steps` steps
    warmup_s: float = 0.0
    peak_mem_mb: float = float("nan")
    mem_kind: str = ""
    phases_ms: dict[str, float] = field(default_factory=dict)  # ms per step by phase (PHASES), if asked


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
                results[w.variant].seconds.append(w.ask("run", steps))
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


__all__ = ["PHASES", "PhaseClock", "Measurement", "measure", "peak_memory_mb", "machine", "device_name", "synchronize"]
