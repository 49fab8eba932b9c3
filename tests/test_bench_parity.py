"""The accuracy-parity benchmark: its statistics against hand computation, its library path against
``train()``, its reuse of finished rows, and the --quick command."""
import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from mosaic import train
from mosaic.bench import parity
from mosaic.config import RunConfig
from mosaic.data import get_dataset
from mosaic.models import get_classifier
from mosaic.teacher import freeze


def rows():
    acc = {("reference", 0): 60.0, ("reference", 1): 62.0, ("reference", 2): 64.0,
           ("library+bf16+cl", 0): 61.0, ("library+bf16+cl", 1): 61.5, ("library+bf16+cl", 2): 65.5}
    return [{"pair": "fmnist<-mnist5k", "path": p, "seed": s, "steps": 200, "student_acc": a, "steps_per_s": 1.0}
            for (p, s), a in acc.items()]


def test_stats_means_and_stds_by_hand():
    s = parity.parity_stats(rows())
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


def tiny_cfg(tmp_path, **kw) -> RunConfig:
    return RunConfig(**{**dict(dataset="digits", ood="mnist5k", teacher="cnn_half", student="cnn_half", kd_steps=2,
                               batch_size=32, z_dim=16, ngf=8, ndf=8, patch_size=4, device="cpu", eval_every=0,
                               ckpt_every=0, teacher_dir=str(tmp_path / "teachers"), out_dir=str(tmp_path / "run")),
                        **kw})


def random_teacher() -> torch.nn.Module:
    torch.manual_seed(0)
    return freeze(get_classifier("cnn_half", get_dataset("digits", "test").spec))


def test_library_path_draws_the_numbers_of_train(tmp_path):
    cfg = tiny_cfg(tmp_path, precision="bf16", channels_last=True)
    teacher = random_teacher()
    ours = parity.train_and_evaluate("library", cfg, steps=3, seed=1, teacher=teacher)
    run = train.train(cfg.replace(steps=3, seed=1), teacher=teacher, progress=False)
    last = run.history[-1]
    assert ours["variant"] == "library+bf16+cl"
    assert {k: ours[k] for k in last if k != "val_acc"} == {k: v for k, v in last.items() if k != "val_acc"}
    assert ours["student_acc"] == pytest.approx(run.metrics["student_acc"])


@pytest.mark.slow
@pytest.mark.parametrize("path", ["library", "reference"])
def test_train_and_evaluate_returns_a_test_accuracy_for_either_path(tmp_path, path):
    cfg = tiny_cfg(tmp_path, teacher_epochs=2)
    out = parity.train_and_evaluate(path, cfg, steps=3, seed=0)
    assert out["path"] == path and out["steps"] == 3 and 0 <= out["student_acc"] <= 100
    assert out["steps_per_s"] > 0 and "loss_s" in out


def test_rows_are_reused_when_their_parameters_give_the_same_results(monkeypatch):
    trained = []
    monkeypatch.setattr(parity, "build_teacher", lambda *a, **k: (None, {}))
    monkeypatch.setattr(parity, "train_and_evaluate", lambda path, cfg, steps, seed, teacher: trained.append(
        (path, seed)) or {"student_acc": 50.0, "wall_s": 1.0, "steps_per_s": 2.0})
    cfg = parity.pair_config("fmnist<-mnist5k", warmup_s=0.0).replace(steps=4, seed=0, device="cpu", eval_every=0, ckpt_every=0)
    neutral = json.dumps(cfg.replace(out_dir="elsewhere", channels_last=True).to_dict())  # same results
    other = json.dumps(cfg.replace(lr_s=0.05).to_dict())  # other results
    done = [{"pair": "fmnist<-mnist5k", "path": "reference", "seed": 0, "student_acc": 60.0, "params": neutral},
            {"pair": "fmnist<-mnist5k", "path": "library", "seed": 0, "student_acc": 61.0, "params": other}]
    out = parity.run("fmnist<-mnist5k", ["reference", "library"], [0], 4, done=done, device="cpu")
    assert trained == [("library", 0)] and [r["student_acc"] for r in out] == [60.0, 50.0]
