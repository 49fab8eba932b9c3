"""A/B rows of the MosaicKD game on the quality benchmark's cells: which change makes the mechanism show?

Each row is MosaicKD as `python -m mosaic.bench quality` runs it (same teacher, budget, lr_g; its fast
path, bf16 + channels_last, with --fast, fp32 NCHW with --no-fast) with some RunConfig fields changed;
the first row, "mosaickd", changes nothing. Rows are ``NAME:field=value,field=value`` (values: numbers, else
YAML). Prints a table and writes CSV + markdown:

    python benchmarks/game_ab.py --pairs "fmnist<-mnist5k" --seeds 0 1 2 \
        --rows "no D:discriminator=none" "w_local 10:w_local=10" "w_local 30:w_local=30"

(Default rows: "no D" and "warm-up 300", the A/B first measured as benchmarks/warmup_ab_fp32_cpu.md when
this script was called warmup_ab.py.) Per row: the final student's test accuracy (mean ± std over
seeds), its paired difference to "mosaickd" (mean ± standard error over seeds), the final student's
in-domain *validation* accuracy (the column to choose on), the discriminator's mean "real" score on OOD
and on synthetic patches over the last 10 game iterations (the D/G balance) and the generator terms'
gradient norms at x (``gx_*``, mean of the last two evaluation steps; which term drives the generator).
Runs live under --runs and are reused.

``--method datafree`` changes the data-free generator instead (its unchanged run is the first row), and a
segmentation pair (``--pairs "fmnist_scenes<-scenes:mnist5k"``) runs at the seg task's budget and reports
mIoU (``student_miou``, ``val_miou``) where classification reports accuracy.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd
import yaml

from mosaic.bench.quality import FAST_PATH, TASKS, metric_of, run_all

DEFAULT_ROWS = ["no D:discriminator=none", "warm-up 300:warmup_gan=300"]


def parse_row(text: str) -> tuple[str, dict]:
    """``"NAME:field=value,field=value"`` -> (NAME, {field: value}); values are read as YAML (10 -> int, 1e-3 -> float)."""
    name, sep, fields = text.partition(":")
    if not sep or not name.strip():
        raise ValueError(f"a row is NAME:field=value[,field=value...], got {text!r}")
    overrides = {}
    for item in filter(None, (f.strip() for f in fields.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"{item!r} in row {text!r} is not field=value")
        overrides[key.strip()] = _value(value.strip())
    return name.strip(), overrides


def _value(text: str):
    """A number when the text is one (YAML would keep ``1e-3`` a string), else the YAML value."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


GX = ("gx_local", "gx_align", "gx_balance", "gx_adv")


def run_diagnostics(run_dir: str, n: int = 10, metric: str = "acc") -> dict[str, float]:
    """From a run's history: mean d_real / d_fake of its last n game iterations, the final val score
    (``val_acc``, or ``val_miou`` with metric="miou"), and the gradient norms at x of its last two evaluation
    steps (NaN where the run has no such column)."""
    h = pd.read_csv(Path(run_dir) / "history.csv")
    game = h[h["loss_s"].notna()] if "loss_s" in h else h
    out = {k: float(game[k].tail(n).mean()) if k in h else math.nan for k in ("d_real", "d_fake")}
    val = f"val_{metric}"
    out[val] = float(h[val].dropna().iloc[-1]) if val in h and h[val].notna().any() else math.nan
    out.update({k: float(h[k].dropna().tail(2).mean()) if k in h else math.nan for k in GX})
    return out


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", nargs="+", default=["fmnist<-mnist5k"],
                   choices=[q for t in TASKS.values() for q in t.pairs],
                   help="the quality benchmark's pairs (a segmentation pair runs at its task's budget and scores mIoU)")
    p.add_argument("--method", default="mosaickd", choices=("mosaickd", "datafree"),
                   help="the method every row changes (its unchanged run is the first row)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, help="game iterations (default: the pairs' task's, as the benchmark)")
    p.add_argument("--rows", nargs="+", default=DEFAULT_ROWS, help="NAME:field=value[,field=value...] per row")
    p.add_argument("--fast", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast + channels_last as the quality benchmark (default); --no-fast: fp32 NCHW")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", default="runs/game_ab")
    p.add_argument("--out", default=None, help="CSV/markdown stem (default benchmarks/game_ab_{fast,fp32}_cpu)")
    a = p.parse_args(argv)
    tasks = {name for name, t in TASKS.items() if set(a.pairs) & set(t.pairs)}
    if len(tasks) > 1:
        p.error(f"--pairs mix tasks ({', '.join(sorted(tasks))}): one task per table")
    task = TASKS[tasks.pop()]
    steps = a.steps or task.steps
    base_row = a.method
    rows = {base_row: {}, **dict(parse_row(r) for r in a.rows)}
    fast = FAST_PATH if a.fast else {}
    tables = []
    for name, overrides in rows.items():
        root = Path(a.runs) / ("fast" if a.fast else "fp32") / name.replace(" ", "_")
        t = run_all(a.pairs, [a.method], a.seeds, steps, root, jobs=a.jobs, threads=a.threads, **fast, **overrides)
        t["row"] = name
        metric = metric_of(t)
        diag = pd.DataFrame([run_diagnostics(d, metric=metric) for d in t["run_dir"]], index=t.index)
        t = pd.concat([t, diag], axis=1)
        tables.append(t)
    runs = pd.concat(tables, ignore_index=True)
    score, val, vs = f"student_{metric}", f"val_{metric}", f"vs_{base_row}"
    base = runs[runs["row"] == base_row].set_index(["pair", "seed"])[score]
    runs[vs] = runs[score] - [base[(r.pair, r.seed)] for r in runs.itertuples()]
    g = runs.groupby(["pair", "row"], sort=False)
    table = pd.DataFrame({
        score: g[score].mean().round(2).astype(str) + " ± " + g[score].std().round(2).astype(str),
        vs: g[vs].mean().round(2).astype(str) + " ± " + (g[vs].std() / g[vs].count() ** 0.5).round(2).astype(str),
        val: g[val].mean().round(2),
        "d_real": g["d_real"].mean().round(3), "d_fake": g["d_fake"].mean().round(3),
        **{k: g[k].mean().round(4) for k in GX},
        "n": g[score].count(), "wall_s": g["wall_s"].mean().round(0),
    }).reset_index()
    out = Path(a.out or f"benchmarks/game_ab_{'fast' if a.fast else 'fp32'}_cpu")
    out.parent.mkdir(parents=True, exist_ok=True)
    runs.drop(columns=["params"]).to_csv(out.with_suffix(".csv"), index=False)
    what = "mIoU (%)" if metric == "miou" else "accuracy"
    md = (f"`python benchmarks/game_ab.py --pairs {' '.join(repr(x) for x in a.pairs)} --method {a.method} --seeds "
          f"{' '.join(map(str, a.seeds))} --steps {steps} --rows {' '.join(repr(r) for r in a.rows)} "
          f"{'--fast' if a.fast else '--no-fast'} --jobs {a.jobs} --threads {a.threads}`"
          f"\n\n{score}: final student's test {what}, mean ± std over seeds; {vs}: paired difference, "
          f"mean ± standard error; {val}: final student's in-domain validation {what} (choose on this); d_real / "
          "d_fake: D's mean real score on OOD / synthetic patches, last 10 game iterations; gx_*: norm of each "
          "weighted generator term's gradient at x, last two evaluation steps\n\n"
          + table.to_markdown(index=False) + "\n")
    out.with_suffix(".md").write_text(md)
    print(md)
    return runs


if __name__ == "__main__":
    main()
