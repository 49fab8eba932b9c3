"""How long must a teacher train? Test accuracy against the SGD-iteration budget, per offline dataset.

The default teacher's budget (``RunConfig.teacher_epochs=0``: ``mosaic.teacher.AUTO_ITERATIONS`` SGD
iterations, whatever the dataset's size) is chosen from this table: the smallest budget whose teacher is
within 2 points of the longest-trained one on *validation* accuracy (the test column is reported, never
used to choose). Each budget is a separate run with its own cosine schedule (epochs = ceil(budget /
iterations per epoch)); teachers are cached in ``--cache`` like any other, so a rerun only trains what is
missing. Prints a table and writes CSV + markdown:

    python benchmarks/teacher_budget.py --datasets fmnist mnist5k digits --budgets 1000 2000 4000 8000 16000

Measured at 1 intra-op thread (the teachers' weights depend on the thread count; ``RunConfig.threads``).
"""
from __future__ import annotations

import argparse
import platform
import time
import warnings
from pathlib import Path

import pandas as pd
import torch

from mosaic.data import get_dataset
from mosaic.teacher import TeacherConfig, WeakTeacherWarning, auto_epochs, get_teacher


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["fmnist", "mnist5k", "digits"])
    p.add_argument("--budgets", nargs="+", type=int, default=[1000, 2000, 4000, 8000, 16000])
    p.add_argument("--arch", default="lenet5")
    p.add_argument("--cache", default="checkpoints/teachers")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/teacher_budget_cpu")
    a = p.parse_args(argv)
    rows = []
    with warnings.catch_warnings():  # short budgets are the point here
        warnings.simplefilter("ignore", WeakTeacherWarning)
        for name in a.datasets:
            n_train = len(get_dataset(name, "train"))
            for budget in sorted(a.budgets):
                cfg = TeacherConfig(dataset=name, arch=a.arch, threads=a.threads,
                                    epochs=auto_epochs(n_train, TeacherConfig.batch_size, budget))
                t0 = time.perf_counter()
                _, info = get_teacher(cfg, a.cache, progress=False)
                rows.append({"dataset": name, "budget": budget, "epochs": cfg.epochs, "n_train": n_train,
                             "val_acc": round(info["val_acc"], 2), "test_acc": round(info["test_acc"], 2),
                             "best_epoch": info["best_epoch"], "cached": info.get("cached", False),
                             "train_s": round(time.perf_counter() - t0, 1)})
                print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    longest = df.loc[df.groupby("dataset")["budget"].idxmax()].set_index("dataset")
    df["val_gap_to_longest"] = (df["dataset"].map(longest["val_acc"]) - df["val_acc"]).round(2)
    df["test_gap_to_longest"] = (df["dataset"].map(longest["test_acc"]) - df["test_acc"]).round(2)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(f"{a.out}.csv", index=False)
    md = (f"# Teacher accuracy against its iteration budget ({a.arch}, {a.threads} thread, "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__})\n\n"
          f"`python benchmarks/teacher_budget.py --datasets {' '.join(a.datasets)} --budgets "
          f"{' '.join(map(str, a.budgets))}`; train_s is 0-ish for teachers found in the cache.\n\n"
          + df.to_markdown(index=False) + "\n")
    Path(f"{a.out}.md").write_text(md)
    print(md)
    return df


if __name__ == "__main__":
    main()
