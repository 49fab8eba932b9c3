"""Quality benchmark: the paper's table on offline pairs, every method on the same teacher and budget.

    python -m mosaic.bench quality --jobs 2 --threads 1   # full table: 3 pairs x 6 methods x 3 seeds
    python -m mosaic.bench quality --quick      # 1 pair, 1 seed, a few steps: a smoke test (minutes)
    python -m mosaic.bench quality --table-only # rebuild table, figure and README section from the CSV

Rows: teacher, scratch, kd_indomain, kd_ood, datafree, mosaickd, mosaickd† (the 50% highest-entropy
OOD images, the paper's † setting). Columns: offline pairs "in-domain <- OOD". Every method gets the
same teacher (seed 0) and the same budget (steps x kd_steps student updates on batches of batch_size);
the generator methods take the lr_g in METHOD_SETTINGS, chosen on in-domain validation data.
The headline is the test accuracy of the *final* student; the test accuracy of the student with the
best in-domain validation accuracy is kept in the CSV only (``student_acc_valsel``: it uses in-domain
validation data). A run whose final student stays at chance is marked in the table (``failed``).

Outputs (``--out``, default benchmarks/): quality_runs.csv (one row per run with its exact
parameters), quality_table.md, quality.png; and the README section between the quality-table markers.
Runs live under ``--runs`` (default runs/bench/) and are reused when their metrics.json exists with
the same parameters, so an interrupted benchmark continues where it stopped.
"""
from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from mosaic.bench.pairs import PAIRS, pair_config
from mosaic.config import RunConfig
# Per-method settings that differ from the RunConfig defaults (the paper's values), each chosen on the
# in-domain *validation* accuracy of the first two pairs, averaged over pairs and 2 seeds; the third pair
# was not looked at. Evidence: benchmarks/val_sweep_cpu.md (`python benchmarks/val_sweep.py --fast`).
METHOD_SETTINGS: dict[str, dict] = {
    "mosaickd": dict(lr_g=3e-3),
    "datafree": dict(lr_g=3e-3),
}
CHANCE_MARGIN = 5.0  # a final student within this many points of chance accuracy did not train
TABLE_METHODS = ("scratch", "kd_indomain", "kd_ood", "datafree", "mosaickd", "mosaickd†")  # the table's rows
ROW_ORDER = ("teacher", *TABLE_METHODS)


def run_config(pair: str, method: str, seed: int, steps: int, runs_root: str | Path, n_ood: int = 0,
               **overrides) -> RunConfig:
    """The exact RunConfig of one benchmark cell; ``n_ood`` (the OOD set's size) sizes the † subset."""
    slug = pair.replace("<-", "_from_")
    subset = n_ood // 2 if method.endswith("†") else 0
    if method.endswith("†") and subset < 1:
        raise ValueError(f"{method} needs the OOD set's size (n_ood) to keep its highest-entropy half")
    return pair_config(pair, method=method.rstrip("†"), steps=steps, seed=seed, ood_subset=subset,
                       eval_every=max(1, steps // 4), ckpt_every=max(1, steps // 4),
                       out_dir=str(Path(runs_root) / slug / method.replace("†", "_dagger") / f"s{seed}"),
                       **{**METHOD_SETTINGS.get(method.rstrip("†"), {}), **overrides})


def ood_size(pair: str, data_root: str = "data") -> int:
    from mosaic.data import get_dataset

    return len(get_dataset(PAIRS[pair]["ood"], "train", root=data_root))


def run_one(cfg: RunConfig, progress: bool = False) -> dict:
    """metrics.json of ``cfg``: read when its folder holds it finished (``RunConfig.same_results``), else trained."""
    from mosaic.checkpoint import write_text_atomic
    from mosaic.train import finished, measure_patches, train

    path = Path(cfg.out_dir) / "metrics.json"
    if not finished(cfg.out_dir, cfg):
        return train(cfg, progress=progress).metrics
    metrics = json.loads(path.read_text())
    if cfg.uses_generator and "patch_rmse" not in metrics:  # a run from before the mosaic distance was recorded
        metrics.update(measure_patches(cfg.out_dir))
        write_text_atomic(json.dumps(metrics, indent=2), path)
    return metrics


OOD_FREE = ("scratch", "kd_indomain", "datafree")  # methods that never look at the OOD images


def twin_key(cfg: RunConfig) -> str | None:
    """For a method that ignores the OOD images, its results-deciding fields (``RunConfig.results_key``)
    without the OOD ones: cells of pairs that share the in-domain side then share one run (trained
    once; its row is repeated per pair)."""
    if cfg.method not in OOD_FREE:
        return None
    key = {k: v for k, v in cfg.results_key().items() if k not in ("ood", "ood_subset")}
    return json.dumps(key, sort_keys=True)


def run_all(pairs, methods, seeds, steps: int, runs_root: str | Path, jobs: int = 1, threads: int = 0, **overrides):
    """Every (pair, method, seed) cell; returns the per-run rows as a DataFrame.

    ``jobs`` > 1 trains that many cells at once in worker processes; ``threads`` (> 0) sets every run's
    ``RunConfig.threads`` (on a 2-core CPU, 2 jobs x 1 thread beat 1 job x 2 threads). Teachers are trained first, once.
    Cells of OOD-free methods (``twin_key``) whose pairs share the in-domain side share one run; each
    row's ``params`` and ``run_dir`` are those of the run that produced its numbers.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    import pandas as pd
    from tqdm.auto import tqdm

    from mosaic.config import resolve_device
    from mosaic.data.photos import write_sample_photos
    from mosaic.build import build_teacher
    from mosaic.train import measure_patches

    if any("skimage_photos" in PAIRS[p]["ood"] for p in pairs):
        write_sample_photos("data/skimage_photos")
    if threads:
        overrides["threads"] = threads
    n_ood = {p: ood_size(p) for p in pairs}
    cells = [(p, m, s) for p in pairs for s in seeds for m in methods]
    cfgs = [run_config(p, m, s, steps, runs_root, n_ood=n_ood[p], **overrides) for p, m, s in cells]
    for p in pairs:  # the teacher cache is filled here, not by racing workers
        first = next(c for (q, _, _), c in zip(cells, cfgs) if q == p)
        build_teacher(first, resolve_device(first.device), progress=False)
    unique, source, seen = [], [], {}  # runs to train; for each cell, the index of the run that serves it
    for cfg in cfgs:
        key = twin_key(cfg)
        if key in seen:  # an OOD-free twin already queued
            source.append(seen[key])
            continue
        if key is not None:
            seen[key] = len(unique)
        source.append(len(unique))
        unique.append(cfg)
    if jobs > 1:
        pool = ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"))
        results = pool.map(run_one, unique)
    else:
        pool, results = None, map(run_one, unique)
    results = list(tqdm(results, total=len(unique), desc="quality benchmark"))
    rows = []
    for (pair, method, seed), cell, i in zip(cells, cfgs, source):
        cfg, m = unique[i], results[i]
        if cfg.uses_generator and cell.ood != cfg.ood:  # a twin's mosaic distance is measured on this pair's OOD
            m = {**m, **measure_patches(cfg.out_dir, ood=cell.ood)}
        rows.append({"pair": pair, "method": method, "seed": seed, "student_acc": m["student_acc"],
                     "student_acc_valsel": m.get("student_acc_valsel"), "valsel_step": m.get("valsel_step"),
                     "teacher_acc": m["teacher_acc"], "agreement": m["agreement"], "wall_s": m["wall_s"],
                     "patch_rmse": m.get("patch_rmse"), "patch_rmse_indomain": m.get("patch_rmse_indomain"),
                     "steps": cfg.steps, "kd_steps": cfg.kd_steps, "batch_size": cfg.batch_size,
                     "precision": cfg.precision, "channels_last": cfg.channels_last,
                     "n_ood": m.get("n_ood"), "num_classes": len(m["per_class_acc"]), "run_dir": cfg.out_dir,
                     "params": json.dumps(cfg.to_dict(), sort_keys=True)})
    if pool is not None:
        pool.shutdown()
    return pd.DataFrame(rows)


def failed(runs):
    """Runs whose final student stayed within CHANCE_MARGIN points of chance (100 / classes): training
    failures. They stay in the table (marked *) and are left out of the target checks."""
    classes = runs["num_classes"] if "num_classes" in runs else 10
    return runs["student_acc"] <= 100 / classes + CHANCE_MARGIN


def table_by_pair(runs):
    """Mean ± std per (row, pair) with a teacher row (cells holding a failed run marked *); and
    per-pair target checks on the means of the runs that did not fail."""
    import pandas as pd

    def fmt(s):
        star = " *" if failed(runs.loc[s.index]).any() else ""
        return (f"{s.mean():.2f} ± {s.std(ddof=1):.2f}" if len(s) > 1 else f"{s.mean():.2f}") + star

    table = runs.groupby(["method", "pair"])["student_acc"].apply(fmt).unstack("pair")
    table.loc["teacher"] = runs.groupby("pair")["teacher_acc"].first().map(lambda v: f"{v:.2f}")
    table = table.reindex([r for r in ROW_ORDER if r in table.index])[list(dict.fromkeys(runs["pair"]))]
    means = runs[~failed(runs)].groupby(["pair", "method"])["student_acc"].mean().unstack("method")
    checks = pd.DataFrame(index=means.index)
    if {"kd_ood", "kd_indomain", "mosaickd"} <= set(means.columns):
        checks["gap_closed_%"] = 100 * (means["mosaickd"] - means["kd_ood"]) / (means["kd_indomain"] - means["kd_ood"])
        checks["of_kd_indomain_%"] = 100 * means["mosaickd"] / means["kd_indomain"]
    if {"datafree", "mosaickd"} <= set(means.columns):
        checks["minus_datafree"] = means["mosaickd"] - means["datafree"]
    if "patch_rmse" in runs and runs["patch_rmse"].notna().any():  # the mosaic distance (train._patch_metrics)
        rmse = runs.groupby(["pair", "method"])["patch_rmse"].mean().unstack("method")
        for method in ("mosaickd", "datafree"):
            if method in rmse:
                checks[f"patch_rmse_{method}"] = rmse[method]
        checks["patch_rmse_indomain"] = runs.groupby("pair")["patch_rmse_indomain"].mean()
    return table, checks.round({c: 3 if c.startswith("patch_rmse") else 1 for c in checks.columns})


def write_outputs(runs, out: str | Path, readme: str | Path | None = "README.md", csv: bool = True) -> str:
    """CSV, markdown table, figure; and the README section between the quality-table markers."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if csv:
        runs.to_csv(out / "quality_runs.csv", index=False)
    table, checks = table_by_pair(runs)
    seeds = runs.groupby(["pair", "method"])["seed"].nunique().min()
    budget = runs.iloc[0]
    md = (f"Test top-1 (%) of the final student, mean ± std over {seeds} seed(s); "
          f"{budget.steps} steps x {budget.kd_steps} student updates, batch {budget.batch_size}, "
          f"{budget.get('precision', 'fp32')}{' channels_last' if budget.get('channels_last', False) else ''}; "
          f"`python -m mosaic.bench quality` (per-run parameters in {(out / 'quality_runs.csv').as_posix()}).\n\n"
          + table.to_markdown() + "\n")
    bad = runs[failed(runs)]
    if len(bad):
        md += ("\n\\* training failures (final student within "
               f"{CHANCE_MARGIN:g} points of chance), kept in the mean ± std above, left out of the targets below: "
               + ", ".join(f"{r.method} {r.pair} seed {r.seed} ({r.student_acc:.2f})" for r in bad.itertuples()) + ".\n")
    md += ("\nTargets (mosaickd vs the others, on the means" + (" of the runs that trained" if len(bad) else "")
           + "):\n\n" + checks.to_markdown() + "\n")
    (out / "quality_table.md").write_text(md)
    fig, ax = plt.subplots(figsize=(9, 3.8))
    order = [m for m in TABLE_METHODS if m in set(runs["method"])]
    sns.barplot(data=runs, x="pair", y="student_acc", hue="method", hue_order=order, errorbar="sd", ax=ax)
    ax.set_ylabel("student test acc (%)")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(out / "quality.png", dpi=120)
    plt.close(fig)
    if readme and Path(readme).exists():
        text = Path(readme).read_text()
        block = f"<!-- quality-table:start -->\n{md}<!-- quality-table:end -->"
        pattern = re.compile(r"<!-- quality-table:start -->.*?<!-- quality-table:end -->", re.S)
        if pattern.search(text):
            Path(readme).write_text(pattern.sub(lambda _: block, text))
    return md


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mosaic.bench quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one pair, one seed, 4 steps, results to --out (smoke test)")
    p.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    p.add_argument("--methods", nargs="+", default=list(TABLE_METHODS), choices=list(TABLE_METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--out", default="benchmarks")
    p.add_argument("--runs", default="runs/bench")
    p.add_argument("--fast", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast + channels_last, the library's fast path (default; --no-fast: fp32 NCHW)")
    p.add_argument("--jobs", type=int, default=1, help="cells trained at once, in worker processes")
    p.add_argument("--threads", type=int, default=0, help="RunConfig.threads of every run (0: its default, 1)")
    p.add_argument("--readme", default="README.md", help="README whose quality-table section is updated ('' = none)")
    p.add_argument("--table-only", action="store_true", help="rebuild outputs from OUT/quality_runs.csv")
    a = p.parse_args(argv)
    if a.table_only:
        import pandas as pd
        print(write_outputs(pd.read_csv(Path(a.out) / "quality_runs.csv"), a.out, readme=a.readme or None, csv=False))
        return 0
    overrides = dict(precision="bf16", channels_last=True) if a.fast else {}
    if a.quick:
        a.pairs, a.seeds, a.steps = a.pairs[:1], a.seeds[:1], 4
        overrides.update(teacher_epochs=1, batch_size=32, kd_steps=2)
    t0 = time.perf_counter()
    runs = run_all(a.pairs, a.methods, a.seeds, a.steps, a.runs, jobs=a.jobs, threads=a.threads, **overrides)
    print(f"{len(runs)} cells ({runs['run_dir'].nunique()} runs) in {time.perf_counter() - t0:.0f} s wall ({a.jobs} job(s), "
          f"{a.threads or RunConfig.threads} thread(s) each)")
    print(write_outputs(runs, a.out, readme=None if a.quick else a.readme or None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
