"""Does the patch discriminator earn its place once the generator has learnt OOD patches first?

A/B on the quality benchmark's cells (same teacher, budget and lr_g as `python -m mosaic.bench quality`; its
fast path, bf16 + channels_last, with --fast, fp32 NCHW with --no-fast): MosaicKD as the benchmark runs it, the same without discriminator (`discriminator=none`), and
the same after `--warmup` iterations of the patch GAN alone (`RunConfig.warmup_gan`, measured first in
shared/FINDINGS.md with a throwaway script). Prints a table and writes CSV + markdown:

    python benchmarks/warmup_ab.py --pairs "fmnist<-mnist5k" "mnist5k<-fmnist" --seeds 0 1 2 --no-fast --jobs 2 --threads 1

Per row: the final student's test accuracy (mean ± std over seeds), its paired difference to MosaicKD
(mean ± standard error over seeds), and the discriminator's mean "real" score on OOD and on synthetic
patches over the last 10 game iterations (the D/G balance). Runs live under --runs and are reused.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from mosaic.bench.pairs import PAIRS
from mosaic.bench.quality import run_all

ROWS = {"mosaickd": {}, "no D": {"discriminator": "none"}}  # the warm-up row is added with its length


def last_d_scores(run_dir: str, n: int = 10) -> tuple[float, float]:
    """Mean d_real / d_fake of the run's last n game iterations (NaN without a discriminator)."""
    h = pd.read_csv(Path(run_dir) / "history.csv")
    h = h[h["loss_s"].notna()].tail(n) if "loss_s" in h else h.tail(n)
    return tuple(float(h[k].mean()) if k in h else math.nan for k in ("d_real", "d_fake"))


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", nargs="+", default=["fmnist<-mnist5k"], choices=list(PAIRS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=200, help="game iterations (the benchmark's budget)")
    p.add_argument("--warmup", type=int, default=300, help="patch-GAN iterations of the warm-up row")
    p.add_argument("--fast", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast + channels_last as the quality benchmark (default); --no-fast: fp32 NCHW")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", default="runs/warmup_ab")
    p.add_argument("--out", default=None, help="CSV/markdown stem (default benchmarks/warmup_ab_{fast,fp32}_cpu)")
    a = p.parse_args(argv)
    rows = {**ROWS, f"warm-up {a.warmup}": {"warmup_gan": a.warmup}}
    fast = dict(precision="bf16", channels_last=True) if a.fast else {}
    tables = []
    for name, overrides in rows.items():
        root = Path(a.runs) / ("fast" if a.fast else "fp32") / name.replace(" ", "_")
        t = run_all(a.pairs, ["mosaickd"], a.seeds, a.steps, root, jobs=a.jobs, threads=a.threads, **fast, **overrides)
        t["row"] = name
        t[["d_real", "d_fake"]] = [last_d_scores(d) for d in t["run_dir"]]
        tables.append(t)
    runs = pd.concat(tables, ignore_index=True)
    base = runs[runs["row"] == "mosaickd"].set_index(["pair", "seed"])["student_acc"]
    runs["vs_mosaickd"] = runs["student_acc"] - [base[(r.pair, r.seed)] for r in runs.itertuples()]
    g = runs.groupby(["pair", "row"], sort=False)
    table = pd.DataFrame({
        "student_acc": g["student_acc"].mean().round(2).astype(str) + " ± " + g["student_acc"].std().round(2).astype(str),
        "vs_mosaickd": g["vs_mosaickd"].mean().round(2).astype(str) + " ± "
                       + (g["vs_mosaickd"].std() / g["vs_mosaickd"].count() ** 0.5).round(2).astype(str),
        "d_real": g["d_real"].mean().round(3), "d_fake": g["d_fake"].mean().round(3),
        "n": g["student_acc"].count(), "wall_s": g["wall_s"].mean().round(0),
    }).reset_index()
    out = Path(a.out or f"benchmarks/warmup_ab_{'fast' if a.fast else 'fp32'}_cpu")
    out.parent.mkdir(parents=True, exist_ok=True)
    runs.drop(columns=["params"]).to_csv(out.with_suffix(".csv"), index=False)
    md = (f"`python benchmarks/warmup_ab.py --pairs {' '.join(repr(x) for x in a.pairs)} --seeds "
          f"{' '.join(map(str, a.seeds))} --steps {a.steps} --warmup {a.warmup} {'--fast' if a.fast else '--no-fast'} "
          f"--jobs {a.jobs} --threads {a.threads}`"
          "\n\nstudent_acc: mean ± std over seeds; vs_mosaickd: paired difference, mean ± standard error; d_real / "
          "d_fake: D's mean real score on OOD / synthetic patches, last 10 game iterations\n\n"
          + table.to_markdown(index=False) + "\n")
    out.with_suffix(".md").write_text(md)
    print(md)
    return runs


if __name__ == "__main__":
    main()
