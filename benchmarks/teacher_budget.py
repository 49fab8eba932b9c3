"""How long must a teacher train? Test accuracy (or mIoU) against the SGD-iteration budget, per offline dataset.

The default teacher's budget (``RunConfig.teacher_epochs=0``: ``mosaic.teacher.auto_budget(task)`` SGD
iterations at the task's batch, whatever the dataset's size) is chosen from this table: the smallest budget
whose teacher is within 2 points of the longest-trained one on *validation* accuracy (the test column is
reported, never used to choose). Each budget is a separate run with its own cosine schedule (epochs =
ceil(budget / iterations per epoch)); teachers are cached in ``--cache`` like any other, so a rerun only trains
what is missing. Prints a table and writes CSV + markdown:

    python benchmarks/teacher_budget.py --datasets fmnist mnist5k digits --budgets 1000 2000 4000 8000 16000
    python benchmarks/teacher_budget.py --datasets fmnist_scenes --arch segnet_small --budgets 312 624 1248 \
        --out benchmarks/teacher_budget_seg_cpu       # segmentation: val/test mIoU, batch 32

Classification datasets are scored by top-1 accuracy (columns ``val_acc``/``test_acc``), segmentation ones by
mIoU (``val_miou``/``test_miou``); every teacher trains at its task's auto batch (``--batch`` to change it).
Measured at 1 intra-op thread (the teachers' weights depend on the thread count; ``RunConfig.threads``).
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import torch

from mosaic.data import get_dataset
from mosaic.evaluate import score_name
from mosaic.teacher import TeacherConfig, WeakTeacherWarning, auto_budget, auto_epochs, get_teacher


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["fmnist", "mnist5k", "digits"])
    p.add_argument("--budgets", nargs="+", type=int, default=[1000, 2000, 4000, 8000, 16000])
    p.add_argument("--arch", default="lenet5")
    p.add_argument("--cache", default="checkpoints/teachers")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=0, help="SGD batch (0: the task's auto batch, mosaic.teacher.auto_budget)")
    p.add_argument("--out", default="benchmarks/teacher_budget_cpu")
    a = p.parse_args(argv)
    rows = []
    with warnings.catch_warnings():  # short budgets are the point here
        warnings.simplefilter("ignore", WeakTeacherWarning)
        for name in a.datasets:
            train = get_dataset(name, "train")
            n_train, metric = len(train), score_name(train.spec)
            batch = a.batch or auto_budget(train.spec.task)[1]
            for budget in sorted(a.budgets):
                cfg = TeacherConfig(dataset=name, arch=a.arch, threads=a.threads, batch_size=batch,
                                    epochs=auto_epochs(n_train, batch, budget))
                t0 = time.perf_counter()
                _, info = get_teacher(cfg, a.cache, progress=False)
                rows.append({"dataset": name, "budget": budget, "batch": batch, "epochs": cfg.epochs,
                             "iterations": info.get("iterations"), "n_train": n_train,
                             f"val_{metric}": round(info[f"val_{metric}"], 2),
                             f"test_{metric}": round(info[f"test_{metric}"], 2), "best_epoch": info["best_epoch"],
                             "cached": info.get("cached", False), "train_s": round(time.perf_counter() - t0, 1),
                             "val_curve": " ".join(map(str, info.get("val_curve", []))) if metric == "miou" else ""})
                print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    if not df["val_curve"].any():  # classification: long curves, left out
        df = df.drop(columns="val_curve")
    longest = df.groupby("dataset")["budget"].transform("idxmax")  # per row: the row of its dataset's longest budget
    for split in ("val", "test"):
        value = df.filter(regex=f"^{split}_(acc|miou)$").bfill(axis=1).iloc[:, 0]  # each dataset's own metric
        df[f"{split}_gap_to_longest"] = (value[longest].to_numpy() - value).round(2)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(f"{a.out}.csv", index=False)
    md = (f"# Teacher accuracy (mIoU for segmentation) against its iteration budget ({a.arch}, {a.threads} thread, "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__})\n\n"
          f"`python benchmarks/teacher_budget.py {' '.join(argv if argv is not None else sys.argv[1:])}`; "
          "train_s is 0-ish for teachers found in the cache.\n\n"
          + df.to_markdown(index=False) + "\n")
    Path(f"{a.out}.md").write_text(md)
    print(md)
    return df


if __name__ == "__main__":
    main()
