"""The helper scripts under benchmarks/: the sweep's selection table and run reading, the sample diagnostics."""
import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from mosaic.config import RunConfig
from mosaic.data import get_dataset
from mosaic.train import train

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


def tiny_run(tmp_path, **kw) -> RunConfig:
    return RunConfig(**{**dict(dataset="digits", ood="mnist5k", teacher="cnn_half", student="cnn_half", teacher_epochs=1,
                               teacher_dir=str(tmp_path / "teachers"), steps=2, kd_steps=1, batch_size=16, z_dim=16,
                               ngf=8, ndf=8, patch_size=4, device="cpu", out_dir=str(tmp_path / "run")), **kw})


def test_sweep_reads_finished_runs_and_trains_missing_ones_saying_so(tmp_path, monkeypatch, capsys):
    vs = load("val_sweep")
    calls = []
    monkeypatch.setattr(vs, "train", lambda cfg, progress: calls.append(("train", cfg.out_dir)) or "trained")
    monkeypatch.setattr(vs, "load_run", lambda out_dir, device: calls.append(("load_run", out_dir)) or "loaded")
    cfg = tiny_run(tmp_path)
    assert vs.sweep_run(cfg) == "trained" and f"training {cfg.out_dir}" in capsys.readouterr().out
    monkeypatch.setattr(vs, "finished", lambda out_dir, c: c is cfg)
    assert vs.sweep_run(cfg) == "loaded" and capsys.readouterr().out == ""
    assert calls == [("train", cfg.out_dir), ("load_run", cfg.out_dir)]


def test_diagnose_reads_a_finished_run_folder_and_never_trains(tmp_path, monkeypatch):
    dg = load("diagnose")
    cfg = tiny_run(tmp_path)
    train(cfg, progress=False)
    monkeypatch.setattr("mosaic.train.train", lambda *a, **k: pytest.fail("diagnose trained"))
    rows = dg.diagnose(cfg.out_dir, n=40)
    assert [r["set"] for r in rows] == ["in-domain", "OOD", "synthetic"] and rows[0]["spread"] == 1.0
    assert {r["method"] for r in rows} == {"mosaickd"} and "d_real" in rows[2]
    assert all(0 <= r["agree_%"] <= 100 for r in rows)
    # on the whole test set the student-teacher agreement is the run's own metrics.json 'agreement'
    n_test = len(get_dataset("digits", "test"))
    whole = dg.diagnose(cfg.out_dir, n=n_test)[0]
    assert whole["agree_%"] == pytest.approx(json.loads((Path(cfg.out_dir) / "metrics.json").read_text())["agreement"],
                                             abs=1e-3)
    with pytest.raises(FileNotFoundError, match="no finished run"):
        dg.diagnose(str(tmp_path / "nothing"))


def test_game_ab_table_pairs_seeds_and_reads_the_diagnostics(tmp_path, monkeypatch):
    ab = load("game_ab")
    acc = {"mosaickd": [70.0, 74.0], "no D": [69.0, 71.0], "wl": [75.0, 80.0]}

    def fake_run_all(pairs, methods, seeds, steps, runs_root, jobs, threads, precision, channels_last, **overrides):
        assert (precision, channels_last) == ("bf16", True)  # the quality benchmark's fast path by default
        row = {(): "mosaickd", (("discriminator", "none"),): "no D",
               (("w_local", 30), ("warmup_gan", 5)): "wl"}[tuple(sorted(overrides.items()))]
        out = []
        for s in seeds:
            d = Path(runs_root) / f"s{s}"
            d.mkdir(parents=True)
            hist = pd.DataFrame({"step": range(1, 13), "loss_s": [None, None] + [1.0] * 10,
                                 "d_real": [0.0, 0.0] + [0.7] * 10, "d_fake": [0.0, 0.0] + [0.3] * 10,
                                 "val_acc": [None] * 11 + [60.0 + s], "gx_local": [None] * 9 + [1.0, None, 3.0]})
            hist.to_csv(d / "history.csv", index=False)
            out.append({"pair": pairs[0], "seed": s, "student_acc": acc[row][s], "wall_s": 1.0, "run_dir": str(d),
                        "params": "{}"})
        return pd.DataFrame(out)

    monkeypatch.setattr(ab, "run_all", fake_run_all)
    runs = ab.main(["--seeds", "0", "1", "--rows", "no D:discriminator=none", "wl:w_local=30, warmup_gan=5",
                    "--runs", str(tmp_path / "r"), "--out", str(tmp_path / "ab")])
    assert list(runs.loc[runs["row"] == "wl", "vs_mosaickd"]) == [5.0, 6.0]
    md = (tmp_path / "ab.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("| fmnist") and "| wl " in x)
    assert "77.5 ± 3.54" in line and "5.5 ± 0.5" in line and "0.7" in line and "0.3" in line  # SE = std/sqrt(2)
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[4] == "60.5" and cells[7] == "2"  # mean final val accuracy; gx_local: mean of the last two eval rows
    assert (tmp_path / "ab.csv").exists()


def test_game_ab_on_a_segmentation_pair_scores_miou_at_the_tasks_budget(tmp_path, monkeypatch):
    ab = load("game_ab")
    seen = []

    def fake_run_all(pairs, methods, seeds, steps, runs_root, jobs, threads, precision, channels_last, **overrides):
        seen.append((methods, steps, overrides))
        out = []
        for s in seeds:
            d = Path(runs_root) / f"s{s}"
            d.mkdir(parents=True)
            pd.DataFrame({"step": [1, 2], "loss_s": [1.0, 1.0], "val_miou": [None, 30.0 + s]}).to_csv(
                d / "history.csv", index=False)
            out.append({"pair": pairs[0], "seed": s, "student_miou": 20.0 + s + overrides.get("w_balance", 0),
                        "wall_s": 1.0, "run_dir": str(d), "params": "{}"})
        return pd.DataFrame(out)

    monkeypatch.setattr(ab, "run_all", fake_run_all)
    runs = ab.main(["--pairs", "fmnist_scenes<-scenes:mnist5k", "--method", "datafree", "--seeds", "0", "1",
                    "--rows", "wb1:w_balance=1", "--runs", str(tmp_path / "r"), "--out", str(tmp_path / "ab")])
    assert seen == [(["datafree"], 150, {}), (["datafree"], 150, {"w_balance": 1})]  # the seg task's budget
    assert list(runs["vs_datafree"]) == [0.0, 0.0, 1.0, 1.0] and list(runs["val_miou"]) == [30.0, 31.0, 30.0, 31.0]
    md = (tmp_path / "ab.md").read_text()
    assert "student_miou" in md and "mIoU" in md and "--method datafree" in md
    with pytest.raises(SystemExit):  # one task per table
        ab.main(["--pairs", "fmnist<-mnist5k", "fmnist_scenes<-scenes:mnist5k", "--out", str(tmp_path / "x")])


def test_game_ab_rows_parse_and_refuse_what_they_cannot_read():
    ab = load("game_ab")
    assert ab.parse_row("w 10: w_local=10, lr_g=1e-3") == ("w 10", {"w_local": 10, "lr_g": 1e-3})
    assert ab.parse_row("none:discriminator=none") == ("none", {"discriminator": "none"})
    for bad in ("no-colon", ":w_local=1", "x:w_local"):
        with pytest.raises(ValueError):
            ab.parse_row(bad)


def test_teacher_budget_trains_one_teacher_per_budget_and_measures_the_gap(tmp_path):
    tb = load("teacher_budget")
    out = tmp_path / "tb"
    df = tb.main(["--datasets", "digits", "--budgets", "20", "40", "--arch", "cnn_half", "--cache",
                  str(tmp_path / "c"), "--out", str(out)])
    assert df["epochs"].tolist() == [2, 4]  # digits: 1,295 train images, 10 iterations per epoch at batch 128
    longest = df.loc[df["budget"] == 40].iloc[0]
    assert longest["val_gap_to_longest"] == 0
    short = df.loc[df["budget"] == 20].iloc[0]
    assert short["val_gap_to_longest"] == pytest.approx(longest["val_acc"] - short["val_acc"], abs=0.011)
    assert pd.read_csv(f"{out}.csv").shape[0] == 2 and "| digits" in Path(f"{out}.md").read_text()
    again = tb.main(["--datasets", "digits", "--budgets", "20", "40", "--arch", "cnn_half", "--cache",
                     str(tmp_path / "c"), "--out", str(out)])
    assert again["cached"].all() and (again["val_acc"] == df["val_acc"]).all()  # a rerun reads the cache
