"""The accuracy-parity benchmark: its summary against hand computation, and the --quick command."""
import subprocess
import sys

import pandas as pd
import pytest

from mosaic.bench import parity


def rows():
    acc = {("reference", 0): 60.0, ("reference", 1): 62.0, ("reference", 2): 64.0,
           ("library+bf16+cl", 0): 61.0, ("library+bf16+cl", 1): 61.5, ("library+bf16+cl", 2): 65.5}
    return [{"pair": "fmnist<-mnist5k", "path": p, "seed": s, "steps": 200, "student_acc": a, "steps_per_s": 1.0}
            for (p, s), a in acc.items()]


def test_summary_means_and_stds_by_hand():
    s = parity.summarize(rows())
    assert s["reference"]["mean"] == pytest.approx(62.0) and s["reference"]["std"] == pytest.approx(2.0)
    assert s["library+bf16+cl"]["mean"] == pytest.approx(188 / 3)
    assert s["library+bf16+cl"]["n"] == 3


def test_markdown_compares_the_difference_with_the_larger_std():
    md = parity.to_markdown(rows(), "python -m mosaic.bench parity")
    assert "| reference | 60.00 | 62.00 | 64.00 | 62.00 ± 2.00 (n=3) |" in md
    assert "+0.67 points" in md and "within seed noise" in md
    far = [dict(r, student_acc=r["student_acc"] + 10) if r["path"] != "reference" else r for r in rows()]
    assert "outside seed noise" in parity.to_markdown(far, "x")


def test_quick_command_writes_a_csv_with_both_paths_and_reuses_its_runs(tmp_path):
    cmd = [sys.executable, "-m", "mosaic.bench", "parity", "--quick", "--threads", "1", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    df = pd.read_csv(tmp_path / "parity_quick.csv")
    assert list(df["path"]) == ["reference", "library+bf16+cl"]
    assert df["student_acc"].between(0, 100).all() and df["params"].str.contains('"steps": 4').all()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "seed 0 reference" not in again.stdout  # nothing retrained
    assert pd.read_csv(tmp_path / "parity_quick.csv").equals(df)
