"""Accuracy parity: does the fast library path learn as well as the plain reference loop?

    python -m mosaic.bench parity                         # fmnist<-mnist5k, 200 steps, seeds 0 1 2
    python -m mosaic.bench parity --fast library library+bf16+cl --seeds 0 1 2 3 4
    python -m mosaic.bench parity --quick                 # a few steps, one seed: a smoke test

Both paths train MosaicKD with the same teacher (the quality benchmark's, cached), OOD images,
initialisation (seed), schedules and budget; only the way the iteration is computed differs (see
``mosaic.bench.variants``: the library path is ``mosaic.train.iterate``, the loop ``train()`` runs;
the reference is a PIL/DataLoader fp32 eager loop). The same seed does not give the same trajectory
on both paths (their random streams differ), so the comparison is between seed distributions.
Reported per seed: the final student's test accuracy and the training loop's wall time; then
mean ± std per path, and for each fast path the difference of its mean from the reference's, with its
standard error and the seed noise (the larger of the two stds).
Outputs: ``OUT/parity.csv`` (one row per run with its exact parameters) and ``OUT/parity.md``. Runs
already in ``OUT/parity.csv`` with the same results-deciding parameters (``RunConfig.same_results``)
are reused, so seeds can be added later.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import torch.nn as nn

from mosaic.bench.pairs import PAIRS, pair_config
from mosaic.bench.reports import command_line, markdown_table
from mosaic.bench.timing import synchronize
from mosaic.bench.variants import Variant, build_step, parse_variant
from mosaic.checkpoint import seed_everything
from mosaic.config import RunConfig, resolve_device
from mosaic.data import get_dataset
from mosaic.evaluate import accuracy
from mosaic.build import build_teacher
from mosaic.nnutil import num_threads


def train_and_evaluate(path: str, cfg: RunConfig, steps: int, seed: int = 0, ref_workers: int = 0,
                       teacher: nn.Module | None = None) -> dict[str, Any]:
    """Train a student for ``steps`` iterations along ``path``; return its test accuracy and speed.

    ``path``: "reference" (the plain loop, fp32 eager), "library" (``mosaic.train.iterate`` with cfg's
    precision / channels_last / compile) or a variant name such as "library+bf16+cl". Both get the same
    teacher (``teacher``, else cfg's cached one), OOD images, init (``seed``), cosine schedules and
    budget; the library path draws the same numbers as ``train()`` of that config. Returns student_acc
    (test split, %), wall_s, steps_per_s and the last step's losses.
    """
    device = resolve_device(cfg.device)
    cfg = cfg.replace(steps=steps, seed=seed, device=device)
    variant = Variant.of(cfg) if path == "library" else parse_variant(path)
    with num_threads(cfg.threads):  # as train() runs (the thread count changes the numbers)
        if teacher is None:
            teacher, _ = build_teacher(cfg, device, progress=False)
        seed_everything(seed)
        step, players, source = build_step(variant, cfg, teacher, None, device, ref_workers)
        t = time.perf_counter()
        for _ in range(steps):
            out = step()
        synchronize(device)
        wall_s = time.perf_counter() - t
        if hasattr(source, "shutdown"):  # the ReferenceLoop's DataLoader workers
            source.shutdown()
        test = get_dataset(cfg.dataset, "test", root=cfg.data_root, download=cfg.download)
        acc = accuracy(players.student, test, device=device)
    return {"path": path, "variant": variant.name, "seed": seed, "steps": steps, "student_acc": acc,
            "wall_s": wall_s, "steps_per_s": steps / wall_s, **out}


def run(pair: str, paths: list[str], seeds: list[int], steps: int, done: Sequence[dict] = (),
        **overrides: Any) -> list[dict]:
    """One row per (seed, path): student test accuracy, wall time and the exact parameters.

    Rows of ``done`` with the same pair, path and seed whose parameters give the same results
    (``RunConfig.same_results``) are reused instead of retrained.
    """
    cfg = pair_config(pair, **{"warmup_s": 0.0, **overrides}).replace(eval_every=0, ckpt_every=0)  # the paper's schedule
    cfg = cfg.replace(device=resolve_device(cfg.device))
    teacher, _ = build_teacher(cfg, cfg.device, progress=False)
    rows = []
    for seed in seeds:
        for path in paths:
            run_cfg = cfg.replace(steps=steps, seed=seed)
            old = [r for r in done if (r["pair"], r["path"], r["seed"]) == (pair, path, seed)
                   and run_cfg.same_results(json.loads(r["params"]))]
            if old:
                rows.append(old[0])
                continue
            t = time.perf_counter()
            r = train_and_evaluate(path, cfg, steps, seed=seed, teacher=teacher)
            rows.append({"pair": pair, "path": path, "seed": seed, "steps": steps, "student_acc": r["student_acc"],
                         "loop_s": round(r["wall_s"], 1), "steps_per_s": round(r["steps_per_s"], 3),
                         "params": json.dumps(run_cfg.to_dict(), sort_keys=True)})
            print(f"  seed {seed} {path}: {r['student_acc']:.2f} % ({time.perf_counter() - t:.0f} s)", flush=True)
    return rows


def parity_stats(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per path: mean, std (ddof 1; 0 with one seed) and n of the student accuracy, mean steps/s."""
    out = {}
    for path in dict.fromkeys(r["path"] for r in rows):
        acc = [r["student_acc"] for r in rows if r["path"] == path]
        out[path] = {"mean": statistics.fmean(acc), "std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
                     "n": len(acc), "steps_per_s": statistics.fmean(r["steps_per_s"] for r in rows if r["path"] == path)}
    return out


def to_markdown(rows: list[dict], command: str) -> str:
    s = parity_stats(rows)
    rs = s["reference"]
    fast = [p for p in s if p != "reference"]
    seeds = sorted({r["seed"] for r in rows})
    cells = []
    for path, st in s.items():
        acc = {r["seed"]: r["student_acc"] for r in rows if r["path"] == path}
        cells.append([path, *[f"{acc[k]:.2f}" if k in acc else "—" for k in seeds],
                      f"{st['mean']:.2f} ± {st['std']:.2f} (n={st['n']})", f"{st['steps_per_s']:.2f}"])
    lines = [f"### accuracy parity: {', '.join(fast)} vs reference", "",
             f"- `{command}`",
             f"- {rows[0]['pair']}, {rows[0]['steps']} steps, seeds {seeds}; final student, test split", "",
             *markdown_table(["path", *[f"seed {k}" for k in seeds], "mean ± std", "steps/s"], cells,
                             "l" + "r" * (len(seeds) + 2)), ""]
    for path in fast:
        fs = s[path]
        diff, noise = fs["mean"] - rs["mean"], max(rs["std"], fs["std"])
        se = (rs["std"] ** 2 / rs["n"] + fs["std"] ** 2 / fs["n"]) ** 0.5
        verdict = "within" if abs(diff) <= noise else "outside"
        lines.append(f"- {path} - reference: {diff:+.2f} points (standard error {se:.2f}); seed noise (larger std) "
                     f"{noise:.2f} points: {verdict} seed noise.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mosaic.bench parity", description=__doc__.split("\n\n")[0])
    p.add_argument("--pair", default="fmnist<-mnist5k", help="a quality-benchmark pair")
    p.add_argument("--fast", nargs="+", default=["library+bf16+cl"], help="library variant(s) compared with the reference")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=0, help="RunConfig.threads of every run (0: its default, 1)")
    p.add_argument("--quick", action="store_true", help="4 steps, one seed, small batch (smoke test)")
    p.add_argument("--out", default="benchmarks")
    a = p.parse_args(argv)
    if a.pair not in PAIRS:
        p.error(f"--pair {a.pair!r}: choose one of {', '.join(PAIRS)}")
    overrides = dict(teacher_epochs=1, batch_size=32, kd_steps=2) if a.quick else {}
    if a.threads:
        overrides["threads"] = a.threads
    steps, seeds = (4, a.seeds[:1]) if a.quick else (a.steps, a.seeds)
    import pandas as pd

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "parity_quick" if a.quick else "parity"
    done = pd.read_csv(out / f"{stem}.csv").to_dict("records") if (out / f"{stem}.csv").exists() else []
    rows = run(a.pair, ["reference", *a.fast], seeds, steps, done=done, **overrides)

    pd.DataFrame(rows).to_csv(out / f"{stem}.csv", index=False)
    md = to_markdown(rows, command_line("parity", argv))
    (out / f"{stem}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
