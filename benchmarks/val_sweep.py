"""One-factor-at-a-time sweep of MosaicKD settings around the paper's values, selected on in-domain
*validation* accuracy of the final student (the test split is recorded but never used to choose).

    python benchmarks/val_sweep.py --out benchmarks/val_sweep.csv [--device cuda] [--steps 200] [--seeds 0] [--fast]
    python benchmarks/val_sweep.py --pairs 'fmnist<-mnist5k' --variants mosaickd w_adv=0.1 --runs runs/sweep
    python benchmarks/val_sweep.py --table benchmarks/val_sweep_cpu.csv [more.csv ...]   # only the table

Options: ``--out`` (the CSV, rewritten after every run), ``--device`` (auto | cpu | cuda), ``--steps``
(outer iterations per run), ``--seeds``, ``--pairs`` (offline pairs of ``mosaic.bench.pairs``),
``--variants`` (names of ``VARIANTS``, default all), ``--runs`` (run folders' root, default
runs/sweep), ``--fast`` (bf16 autocast + channels_last), ``--table CSV...`` (print the markdown table
of finished sweeps and stop).

Each row: pair, variant, seed, val_acc (final student, in-domain val split), test_acc, and the exact
RunConfig as JSON. Each run lives in RUNS/<pair>/<variant>/s<seed>: a folder that holds a finished
run of the same parameters is read with ``mosaic.train.load_run``; otherwise the run is trained there
(the sweep prints that it does so).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from mosaic.bench.pairs import PAIRS, pair_config
from mosaic.bench.quality import FAST_PATH
from mosaic.config import RunConfig
from mosaic.train import RunResult, finished, load_run, train

VARIANTS: dict[str, dict] = {
    "kd_ood": dict(method="kd_ood"),
    "kd_indomain": dict(method="kd_indomain"),
    "datafree": dict(method="datafree"),
    "mosaickd": dict(),
    "w_adv=0.1": dict(w_adv=0.1),
    "w_adv=0.3": dict(w_adv=0.3),
    "w_local=0.3": dict(w_local=0.3),
    "w_local=3": dict(w_local=3.0),
    "w_align=0.3": dict(w_align=0.3),
    "w_balance=1": dict(w_balance=1.0),
    "patch=4": dict(patch_size=4),
    "patch=18": dict(patch_size=18),
    "disc=none": dict(discriminator="none"),
    "ngf=64": dict(ngf=64),
    "lr_g=3e-4": dict(lr_g=3e-4),
    "lr_g=3e-3": dict(lr_g=3e-3),
    "student_ood=0": dict(student_ood=False),
    "student_ood=0,disc=none": dict(student_ood=False, discriminator="none"),
    "student_ood=0,lr_g=3e-3": dict(student_ood=False, lr_g=3e-3),
    "datafree,lr_g=3e-3": dict(method="datafree", lr_g=3e-3),
}


def table(runs) -> str:
    """Markdown: mean val (the selection criterion) and mean test per variant and pair, over seeds."""
    g = runs.groupby(["variant", "pair"])
    val = g["val_acc"].mean().unstack("pair").add_suffix(" val")
    val["mean val (pairs alike)"] = val.mean(axis=1)
    t = val.join(g["test_acc"].mean().unstack("pair").add_suffix(" test")).round(2)
    t["seeds"] = g["seed"].nunique().groupby("variant").min()
    return t.loc[list(dict.fromkeys(runs["variant"]))].to_markdown() + "\n"


def sweep_run(cfg: RunConfig) -> RunResult:
    """The run of ``cfg`` in ``cfg.out_dir``: read when finished with the same results, else trained there."""
    if finished(cfg.out_dir, cfg):
        return load_run(cfg.out_dir, device=cfg.device)
    print(f"training {cfg.out_dir} (no finished run of these parameters there)", flush=True)
    return train(cfg, progress=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/val_sweep.csv")
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--pairs", nargs="+", default=["fmnist<-mnist5k", "mnist5k<-fmnist"], choices=list(PAIRS),
                   metavar="PAIR")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="NAME")
    p.add_argument("--runs", default="runs/sweep")
    p.add_argument("--fast", action="store_true", help="bf16 autocast + channels_last (the benchmarks' fast path)")
    p.add_argument("--table", nargs="+", metavar="CSV", help="only print the markdown table of these CSVs (merged)")
    a = p.parse_args()
    if a.table:
        print(table(pd.concat([pd.read_csv(f) for f in a.table], ignore_index=True)))
        return
    fast = FAST_PATH if a.fast else {}
    rows = []
    for pair in a.pairs:
        for seed in a.seeds:
            for name in a.variants:
                slug = f"{pair.replace('<-', '_from_')}/{name.replace('=', '')}/s{seed}"
                cfg = pair_config(pair, **fast, **VARIANTS[name], steps=a.steps, seed=seed, device=a.device,
                                  eval_every=a.steps, ckpt_every=a.steps, out_dir=f"{a.runs}/{slug}")
                t0 = time.perf_counter()
                res = sweep_run(cfg)
                rows.append({"pair": pair, "variant": name, "seed": seed, "val_acc": res.history[-1]["val_acc"],
                             "test_acc": res.metrics["student_acc"], "teacher_acc": res.metrics["teacher_acc"],
                             "wall_s": round(time.perf_counter() - t0, 1), "params": json.dumps(cfg.to_dict(), sort_keys=True)})
                Path(a.out).parent.mkdir(parents=True, exist_ok=True)
                pd.DataFrame(rows).to_csv(a.out, index=False)  # after every run: a cut-off sweep keeps its rows
                print(f"{pair:>16} {name:>12} s{seed}  val {rows[-1]['val_acc']:.2f}  test {rows[-1]['test_acc']:.2f}  "
                      f"({rows[-1]['wall_s']} s)", flush=True)


if __name__ == "__main__":
    main()
