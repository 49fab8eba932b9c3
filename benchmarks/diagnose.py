"""What a finished run's generator gives the student: class balance, confidence and diversity of its
samples as the teacher reads them, next to the real OOD images and in-domain test images.

    python benchmarks/diagnose.py RUN_DIR [RUN_DIR ...] [--n 2000] [--out FILE.md]
    python benchmarks/diagnose.py runs/bench/fmnist_from_mnist5k/{datafree,mosaickd}/s0 --out benchmarks/diagnose.md

Each RUN_DIR is a finished run folder (metrics.json + checkpoint.pt, e.g. from ``python -m mosaic.bench
quality``); it is read with ``mosaic.train.load_run`` on the CPU, whatever its parameters, and never
trained (a folder without a finished run is an error that says how to make one). ``--n``: images per
set; ``--out``: also write the table there (markdown) and next to it as CSV.

Per run and per image set (synthetic = 2,000 generator samples; OOD = the run's OOD images; in-domain
= 2,000 test images), in the teacher's view:
- ``classes_eff``: exp(entropy of the predicted-class histogram), 1..K: how many classes the set covers;
- ``min_class_%``: share of the rarest predicted class;
- ``conf``: mean max-softmax;
- ``spread``: mean distance of the teacher's penultimate features to their class mean, averaged over
  classes, relative to the in-domain test set's (1.0 = as diverse as real in-domain images per class);
- ``agree_%``: how often the run's final student predicts the teacher's class on the set. High on synthetic
  and low on in-domain means the student learnt the teacher where the generator drew and the generator does
  not draw enough of where in-domain images lie (coverage); low on synthetic too means the student did not fit;
and the run's final student: test accuracy and its two worst classes. For mosaickd runs with a
discriminator, the last 20 logged steps' mean D score on real OOD patches and on synthetic patches.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from mosaic import patches, viz
from mosaic.data import get_dataset
from mosaic.build import build_ood
from mosaic.train import load_run


def set_stats(read: dict[str, torch.Tensor], k: int) -> dict[str, float]:
    hist = torch.bincount(read["pred"], minlength=k).float()
    p = hist / hist.sum()
    ent = -(p[p > 0] * p[p > 0].log()).sum().item()
    spread = []
    for c in range(k):
        f = read["features"][read["pred"] == c]
        if len(f) > 1:
            spread.append((f - f.mean(0)).norm(dim=1).mean().item())
    return {"classes_eff": math.exp(ent), "min_class_%": 100 * p.min().item(), "conf": read["confidence"].mean().item(),
            "spread_abs": sum(spread) / max(1, len(spread))}


def diagnose(run_dir: str, n: int = 2000, seed: int = 0) -> list[dict]:
    """One row per image set (in-domain, OOD, synthetic when the method has a generator) of a finished run."""
    result = load_run(run_dir, device="cpu")  # reads the folder, never trains
    cfg, m, teacher = result.config, result.metrics, result.players.teacher
    ood = result.ood if result.ood is not None else build_ood(cfg, teacher, "cpu")  # OOD-free methods: for comparison
    test = get_dataset(cfg.dataset, "test", root=cfg.data_root)
    k = test.spec.num_classes
    g = torch.Generator().manual_seed(seed)
    sets = {"in-domain": test.images[torch.randperm(len(test), generator=g)[:n]].float() / 255,
            "OOD": ood.images[:n].float() / 255}
    if cfg.uses_generator:
        sets["synthetic"] = viz.sample(result.players.generator, n, cfg.z_dim, "cpu", seed=seed)
    reads = {name: patches.measure(teacher, x, features=True) for name, x in sets.items()}
    stats = {name: set_stats(read, k) for name, read in reads.items()}
    student = result.players.student.eval()
    for name, x in sets.items():
        with torch.no_grad():
            pred = torch.cat([student(x[i:i + 500]).argmax(dim=1) for i in range(0, len(x), 500)])
        stats[name]["agree_%"] = 100 * (pred == reads[name]["pred"]).float().mean().item()
    ref = stats["in-domain"]["spread_abs"]
    worst = sorted(range(k), key=lambda c: m["per_class_acc"][c])[:2]
    worst = ", ".join(f"{test.classes[c]} {m['per_class_acc'][c]:.0f}%" for c in worst)
    hist = result.history[-20:]
    rows = []
    for name, s in stats.items():
        row = {"run": run_dir, "method": cfg.method, "set": name, **{key: round(v, 3) for key, v in s.items()},
               "spread": round(s["spread_abs"] / ref, 3), "student_acc": round(m["student_acc"], 2),
               "worst_classes": worst}
        if name == "synthetic" and hist and "d_real" in hist[-1]:
            row["d_real"] = round(sum(h["d_real"] for h in hist) / len(hist), 3)
            row["d_fake"] = round(sum(h["d_fake"] for h in hist) / len(hist), 3)
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="finished run folders (with metrics.json and checkpoint.pt)")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--out", default=None, help="markdown file for the table (printed either way)")
    a = p.parse_args()
    import pandas as pd

    df = pd.DataFrame([r for run in a.runs for r in diagnose(run, a.n)]).drop(columns="spread_abs")
    md = df.to_markdown(index=False) + "\n"
    print(md)
    if a.out:
        Path(a.out).write_text(md)
        df.to_csv(Path(a.out).with_suffix(".csv"), index=False)


if __name__ == "__main__":
    main()
