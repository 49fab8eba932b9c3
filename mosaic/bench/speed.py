"""Speed benchmark: the library's MosaicKD iteration against a plain reference loop, in one run.

    python -m mosaic.bench speed                 # CPU default config, writes benchmarks/speed_default_cpu.{csv,md}
    python -m mosaic.bench speed --compile       # adds the torch.compile variants (compile time reported apart)
    python -m mosaic.bench speed --paper --device cuda   # the paper setting (random init, synthetic OOD)
    python -m mosaic.bench speed --quick         # a few iterations: a smoke test, numbers meaningless

What is measured. One *step* is one outer MosaicKD iteration: a D step, a G step and ``kd_steps``
student steps. The library path is the loop users run, ``mosaic.train.iterate`` (``game.step``, the
cosine schedules, the NaN guard) with players, schedules and OOD stream from ``mosaic.train``; the
reference path is ``mosaic.bench.reference.ReferenceLoop`` (same networks, losses, schedules and
budget, written the way the original code runs: PIL/torchvision DataLoader, fp32, eager, teacher not
frozen). Both are built by ``mosaic.bench.variants.build_step``.
Variants of the library path add options that exist in the library: ``bf16`` (autocast), ``fp16``
(CUDA), ``cl`` (channels_last: student, generator, discriminator and teacher), ``compile``
(torch.compile of student, generator, discriminator). Under bf16/fp16 every forward runs under
autocast, the student steps' synthesis included.
The reference takes ``w<N>`` (N DataLoader worker processes) and ``libpool``: the reference
normally runs stock torch layers as the original code does (``nn.MaxPool2d``); ``libpool`` gives
it the library's exact, faster max-pool layers (``mosaic.models.pool``) instead, so the table also
shows how much of the speed-up is the loop and how much the pooling layers.

How (``mosaic.bench.timing``). Every variant lives in its own worker process (clean peak memory
per variant; the workers build their players from the same seed), warms up, then the parent runs
the workers one at a time in rounds, rotating the order each round, so slow drifts of a shared
machine hit every variant alike. Reported per variant: the median over rounds of steps/s (and min, max), the median over
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
so it runs on a bare GPU machine (and, slowly, on a CPU with ``--steps 2``) -- the presets live in
``mosaic.bench.pairs``.

Whether the fast path also learns as well as the reference: ``python -m mosaic.bench parity``.
"""
from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from mosaic.bench.reports import command_line, csv_text, markdown_table
from mosaic.bench.timing import PHASES, Measurement, device_name, machine, measure
from mosaic.bench.variants import OPTIONS, default_variants, make_setup, parse_variant
from mosaic.config import resolve_device

HELPS_MARGIN = 1.05  # an option "helps" when it beats every variant it extends by this factor
CSV_COLUMNS = ["timestamp", "preset", "device", "device_name", "torch", "threads", "variant", "path", "precision",
               "channels_last", "compile", "batch_size", "kd_steps", "ngf", "ndf", "warmup", "steps",
               "rounds", "steps_per_s", "steps_per_s_min", "steps_per_s_max", "ratio", "compile_s",
               "peak_mem_mb", "mem_kind", "helps"]


# ----------------------------------------------------------------------------- from seconds to a table

def baseline(measurements: list[Measurement]) -> Measurement | None:
    """The fastest stock reference variant (no libpool), else the fastest reference, else None."""
    refs = [m for m in measurements if m.variant.path == "reference"]
    stock = [m for m in refs if "libpool" not in m.variant.options] or refs
    return min(stock, key=lambda m: statistics.median(m.seconds), default=None)


def same_round_ratio(fast: Measurement, slow: Measurement) -> float:
    """Median over rounds of slow's time / fast's time in the same round."""
    return statistics.median([s / f for f, s in zip(fast.seconds, slow.seconds)])


def speed_rows(measurements: list[Measurement], steps: int, warmup: int) -> list[dict[str, Any]]:
    """One row per variant: median/min/max steps/s, median same-round ratio to the baseline, helps."""
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


def to_markdown(rows: list[dict[str, Any]], title: str, notes: list[str]) -> str:
    header = ["variant", "steps/s (median)", "min – max", "× reference", "helps", "compile s", "peak memory MB"]
    cells = [[r["variant"], f"{r['steps_per_s']:.3f}", f"{r['steps_per_s_min']:.3f} – {r['steps_per_s_max']:.3f}",
              f"{r['ratio']:.2f}", r["helps"] or "—", f"{r['compile_s']:.1f}" if r["compile"] else "—",
              f"{r['peak_mem_mb']:.0f}"] for r in rows]
    lines = [f"### {title}", "", *[f"- {n}" for n in notes], "", *markdown_table(header, cells, "lrrrcrr")]
    return "\n".join(lines) + "\n"


def phases_markdown(measurements: list[Measurement]) -> str:
    cells = [[m.variant.name, *[f"{m.phases_ms[k]:.0f}" for k in PHASES], f"{sum(m.phases_ms.values()):.0f}"]
             for m in measurements if m.phases_ms]
    lines = markdown_table(["variant", *PHASES, "total"], cells, "l" + "r" * (len(PHASES) + 1))
    return "ms per step, by phase (D includes x = G(z); S_synth = the student steps' no-grad G forwards; "\
           "S = the rest of the student steps)\n\n" + "\n".join(lines) + "\n"


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
    rows = speed_rows(measurements, steps, warmup)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    common = {"timestamp": stamp, "preset": preset, "device": device, "device_name": device_name(device),
              "torch": torch.__version__, "threads": threads, "batch_size": cfg.batch_size, "kd_steps": cfg.kd_steps,
              "ngf": cfg.ngf, "ndf": cfg.ndf, "warmup": warmup, "steps": steps, "rounds": rounds}
    rows = [{**common, **r} for r in rows]
    ood = f"synthetic x{setup.synthetic_ood}" if setup.synthetic_ood else cfg.ood
    base = baseline(measurements)
    base_name = base.variant.name if base else "nothing (no reference ran)"
    notes = [f"`{command_line('speed', argv)}`",
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
    (out / f"{stem}.csv").write_text(csv_text(rows, CSV_COLUMNS))
    (out / f"{stem}.md").write_text(md)
    print(md)
    print(f"wrote {out / stem}.csv and .md ({time.perf_counter() - t0:.0f} s)")
    return 0


__all__ = ["CSV_COLUMNS", "baseline", "same_round_ratio", "speed_rows", "libpool_notes", "to_markdown",
           "phases_markdown", "main"]
