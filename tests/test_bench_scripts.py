"""The helper scripts under benchmarks/: the sweep's selection table and the sample diagnostics."""
import importlib.util
from pathlib import Path

import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sweep_table_weighs_pairs_alike_and_counts_complete_seeds():
    vs = load("val_sweep")
    rows = [("a", "p", 0, 60.0, 59.0), ("a", "p", 1, 70.0, 69.0), ("a", "q", 0, 90.0, 88.0),
            ("b", "p", 0, 50.0, 50.0), ("b", "q", 0, 80.0, 80.0)]
    runs = pd.DataFrame(rows, columns=["variant", "pair", "seed", "val_acc", "test_acc"])
    md = vs.table(runs)
    line = next(x for x in md.splitlines() if x.startswith("| a "))
    cells = [c.strip() for c in line.strip("|").split("|")]
    # p val = 65 (mean of 2 seeds), q val = 90, mean over pairs = 77.5 (not the run mean 73.33); 1 complete seed
    assert cells[1:4] == ["65", "90", "77.5"] and cells[-1] == "1"


def test_set_stats_of_a_balanced_and_a_one_class_set():
    dg = load("diagnose")
    k = 4
    balanced = {"pred": torch.arange(8) % k, "confidence": torch.full((8,), 0.5), "features": torch.randn(8, 3)}
    s = dg.set_stats(balanced, k)
    assert s["classes_eff"] == pytest.approx(4.0) and s["min_class_%"] == pytest.approx(25.0)
    one = {"pred": torch.zeros(8, dtype=torch.long), "confidence": torch.ones(8),
           "features": torch.cat([torch.zeros(4, 3), torch.ones(4, 3)])}
    s = dg.set_stats(one, k)
    assert s["classes_eff"] == pytest.approx(1.0) and s["min_class_%"] == 0.0 and s["conf"] == 1.0
    assert s["spread_abs"] == pytest.approx(3 ** 0.5 / 2)  # every feature is half the (1,1,1) diagonal from the mean
