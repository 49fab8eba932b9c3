"""The quality benchmark's bookkeeping (hand-made runs) and its --quick smoke run."""
import json
import subprocess
import sys

import pandas as pd
import pytest

from mosaic.bench import pairs, quality
from mosaic.config import RunConfig


def fake_runs():
    rows = []
    acc = {"kd_ood": [40, 42], "kd_indomain": [80, 82], "mosaickd": [72, 74], "datafree": [70, 70]}
    for method, values in acc.items():
        for seed, v in enumerate(values):
            rows.append({"pair": "a<-b", "method": method, "seed": seed, "student_acc": float(v), "teacher_acc": 90.0,
                         "steps": 10, "kd_steps": 5, "batch_size": 8})
    return pd.DataFrame(rows)


def test_summary_mean_std_and_targets_against_hand_computation():
    table, checks = quality.table_by_pair(fake_runs())
    assert table.loc["kd_ood", "a<-b"] == "41.00 ± 1.41"
    assert table.loc["teacher", "a<-b"] == "90.00"
    assert list(table.index) == ["teacher", "kd_indomain", "kd_ood", "datafree", "mosaickd"]
    # (73 - 41) / (81 - 41) = 80 %, 73 / 81 = 90.1 %, 73 - 70 = 3
    assert checks.loc["a<-b", "gap_closed_%"] == 80.0
    assert checks.loc["a<-b", "of_kd_indomain_%"] == 90.1
    assert checks.loc["a<-b", "minus_datafree"] == 3.0
    assert "patch_rmse_mosaickd" not in checks  # runs without the mosaic distance: no column


def test_the_mosaic_distance_per_pair_next_to_the_in_domain_images():
    runs = fake_runs()
    runs["patch_rmse"] = runs["method"].map({"mosaickd": 0.2, "datafree": 0.3})
    runs["patch_rmse_indomain"] = 0.25
    runs.loc[(runs["method"] == "mosaickd") & (runs["seed"] == 1), "patch_rmse"] = 0.1
    checks = quality.table_by_pair(runs)[1]
    assert checks.loc["a<-b", "patch_rmse_mosaickd"] == 0.15  # mean over seeds, 3 digits
    assert checks.loc["a<-b", "patch_rmse_datafree"] == 0.3 and checks.loc["a<-b", "patch_rmse_indomain"] == 0.25
    assert checks.loc["a<-b", "gap_closed_%"] == 80.0  # the other targets keep 1 digit


def test_sample_figure_shows_the_first_seeds_samples_of_each_generator_method(tmp_path):
    import matplotlib.pyplot as plt
    import numpy as np

    runs = fake_runs()
    assert quality.sample_figure(runs) is None  # no run folders: no figure (and write_outputs does not fail)
    runs["run_dir"] = [str(tmp_path / f"{m}{s}") for m, s in zip(runs["method"], runs["seed"])]
    for method in ("mosaickd", "datafree"):
        (tmp_path / f"{method}0").mkdir()
        plt.imsave(tmp_path / f"{method}0" / "samples.png", np.random.default_rng(0).random((80, 80)), cmap="gray")
    fig = quality.sample_figure(runs)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["a<-b: datafree, seed 0 (70.0)", "a<-b: mosaickd, seed 0 (72.0)"]
    assert fig.axes[1].images[0].get_array().shape[0] == 80 * 2 // 8 + 1  # the top 2 of the grid's 8 rows
    plt.close(fig)
    quality.write_outputs(runs, tmp_path / "out", readme=None)
    assert (tmp_path / "out" / "quality_samples.png").exists()


def test_readme_section_is_replaced_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- quality-table:start -->\nold\n<!-- quality-table:end -->\noutro\n")
    quality.write_outputs(fake_runs(), tmp_path / "out", readme=readme)
    text = readme.read_text()
    assert "old" not in text and "41.00 ± 1.41" in text and text.startswith("intro") and text.endswith("outro\n")
    assert (tmp_path / "out" / "quality_runs.csv").exists() and (tmp_path / "out" / "quality.png").exists()


def test_every_cell_has_the_same_budget_and_teacher():
    cfgs = [quality.run_config(p, m, 0, 50, "runs", n_ood=1000) for p in pairs.PAIRS for m in quality.TABLE_METHODS]
    assert len({(c.steps, c.kd_steps, c.batch_size) for c in cfgs}) == 1
    for p in pairs.PAIRS:
        teachers = {(c.teacher, c.teacher_epochs, c.teacher_seed) for c in cfgs if c.dataset == pairs.PAIRS[p]["dataset"]
                    and c.ood == pairs.PAIRS[p]["ood"]}
        assert len(teachers) == 1
    assert len({c.out_dir for c in cfgs}) == len(cfgs)
    assert {c.ood_subset for c in cfgs} == {0, 500}


@pytest.mark.slow
def test_quick_mode_writes_a_csv_with_parameters(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mosaic.bench", "quality", "--quick", "--out", str(tmp_path / "b"),
                           "--runs", str(tmp_path / "runs"), "--methods", "kd_ood", "mosaickd", "mosaickd†"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "b" / "quality_runs.csv")
    assert set(runs["method"]) == {"kd_ood", "mosaickd", "mosaickd†"} and (runs["steps"] == 4).all()
    params = [RunConfig.from_dict(json.loads(p)) for p in runs["params"]]
    subset = next(p for p, m in zip(params, runs["method"]) if m == "mosaickd†")
    assert subset.ood_subset > 0 and runs.loc[runs["method"] == "mosaickd†", "n_ood"].item() == subset.ood_subset


def test_quick_never_writes_over_the_real_tables_unless_told():
    from mosaic.bench.quality import parse_args
    _, quick = parse_args(["--quick"])
    _, full = parse_args([])
    assert (quick.out, quick.runs) == ("runs/quick/benchmarks", "runs/quick/runs")
    assert (full.out, full.runs) == ("benchmarks", "runs/bench")
    _, told = parse_args(["--quick", "--out", "x", "--runs", "y"])
    assert (told.out, told.runs) == ("x", "y")


def test_method_settings_reach_their_method_only():
    from mosaic.config import RunConfig

    keys = {k for s in quality.METHOD_SETTINGS.values() for k in s}
    assert keys, "nothing to check"
    for m in quality.TABLE_METHODS:
        c = quality.run_config("fmnist<-mnist5k", m, 0, 50, "runs", n_ood=1000)
        own = quality.METHOD_SETTINGS.get(m.rstrip("†"), {})
        for k in keys:
            assert getattr(c, k) == own.get(k, getattr(RunConfig(), k)), (m, k)


def test_a_run_at_chance_is_marked_and_left_out_of_the_targets_only():
    runs = fake_runs()
    runs.loc[len(runs)] = {"pair": "a<-b", "method": "kd_indomain", "seed": 2, "student_acc": 9.7, "teacher_acc": 90.0,
                           "steps": 10, "kd_steps": 5, "batch_size": 8}
    table, checks = quality.table_by_pair(runs)
    assert table.loc["kd_indomain", "a<-b"].endswith(" *")  # mean of 80, 82, 9.7 with the mark
    assert table.loc["kd_indomain", "a<-b"].startswith(f"{(80 + 82 + 9.7) / 3:.2f}")
    assert checks.loc["a<-b", "gap_closed_%"] == 80.0  # as without the failed run
    assert not table.loc["kd_ood", "a<-b"].endswith("*")


def test_ood_free_methods_share_one_run_across_pairs_with_the_same_in_domain_side(monkeypatch, tmp_path):
    trained = []

    def fake_run_one(cfg):
        trained.append(cfg)
        return {"student_acc": 50.0 + len(trained), "teacher_acc": 90.0, "agreement": 60.0, "wall_s": 1.0,
                "per_class_acc": [50.0] * 10}

    monkeypatch.setattr(quality, "run_one", fake_run_one)
    monkeypatch.setattr(quality, "ood_size", lambda pair, data_root="data": 100)
    monkeypatch.setattr("mosaic.build.build_teacher", lambda *a, **k: (None, {}))
    monkeypatch.setattr("mosaic.data.photos.write_sample_photos", lambda *a, **k: None)
    measured = []  # the twin's mosaic distance on the other pair's OOD bank
    monkeypatch.setattr("mosaic.train.measure_patches", lambda d, ood=None: measured.append(ood) or {"patch_rmse": 0.5})
    pairs = ["fmnist<-mnist5k", "fmnist<-photos"]
    runs = quality.run_all(pairs, ["scratch", "datafree", "mosaickd"], [0], 5, tmp_path)
    assert measured == [quality.PAIRS[pairs[1]]["ood"]]  # datafree of the photos pair only
    assert runs.set_index(["pair", "method"]).loc[(pairs[1], "datafree"), "patch_rmse"] == 0.5
    assert len(runs) == 6 and len(trained) == 4  # scratch and datafree once, mosaickd per pair
    by = runs.set_index(["pair", "method"])
    for m in ("scratch", "datafree"):
        assert by.loc[(pairs[0], m), "student_acc"] == by.loc[(pairs[1], m), "student_acc"]
        assert by.loc[(pairs[0], m), "run_dir"] == by.loc[(pairs[1], m), "run_dir"]
    assert by.loc[(pairs[0], "mosaickd"), "run_dir"] != by.loc[(pairs[1], "mosaickd"), "run_dir"]


def test_twins_are_the_configs_that_give_the_same_results_but_for_the_ood_side():
    a = quality.run_config("fmnist<-mnist5k", "scratch", 0, 8, "runs")
    b = quality.run_config("fmnist<-photos", "scratch", 0, 8, "runs")
    assert a.ood != b.ood and quality.twin_key(a) == quality.twin_key(b)
    assert quality.twin_key(a.replace(device="cpu", eval_every=1, channels_last=True)) == quality.twin_key(a)  # neutral
    assert quality.twin_key(a.replace(lr_s=0.05)) != quality.twin_key(a)
    assert quality.twin_key(quality.run_config("fmnist<-mnist5k", "kd_ood", 0, 8, "runs")) is None


# ----------------------------------------------------------------------------- --task seg

SEG_PAIR = "fmnist_scenes<-scenes:mnist5k"


def fake_seg_runs():
    rows = []
    miou = {"kd_ood": [10, 12], "kd_indomain": [30, 32], "mosaickd": [15, 17], "datafree": [20, 20], "scratch": [25, 26]}
    for method, values in miou.items():
        for seed, v in enumerate(values):
            rows.append({"pair": SEG_PAIR, "method": method, "seed": seed, "student_miou": float(v), "teacher_miou": 40.0,
                         "pixel_acc": 80.0, "num_classes": 11, "steps": 10, "kd_steps": 5, "batch_size": 8})
    return pd.DataFrame(rows)


def test_seg_table_is_in_miou_with_the_same_targets(tmp_path):
    table, checks = quality.table_by_pair(fake_seg_runs())
    assert table.loc["teacher", SEG_PAIR] == "40.00" and table.loc["kd_ood", SEG_PAIR] == "11.00 ± 1.41"
    # (16 - 11) / (31 - 11) = 25 %, 16 - 20 = -4
    assert checks.loc[SEG_PAIR, "gap_closed_%"] == 25.0 and checks.loc[SEG_PAIR, "minus_datafree"] == -4.0
    readme = tmp_path / "README.md"
    readme.write_text("<!-- quality-table:start -->\nkeep\n<!-- quality-table:end -->\n"
                      "<!-- seg-quality-table:start -->\nold\n<!-- seg-quality-table:end -->\n")
    md = quality.write_outputs(fake_seg_runs(), tmp_path / "out", readme=readme, prefix="seg_quality")
    assert md.startswith("Test mIoU (%)") and "--task seg" in md
    text = readme.read_text()
    assert "keep" in text and "old" not in text and "11.00 ± 1.41" in text  # only the seg section changed
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"seg_quality_runs.csv", "seg_quality_table.md",
                                                              "seg_quality.png"}


def test_a_seg_run_no_better_than_a_constant_map_is_a_failure():
    runs = fake_seg_runs()
    runs.loc[len(runs)] = {**runs.iloc[0].to_dict(), "method": "kd_indomain", "seed": 2, "student_miou": 100 / 11}
    assert quality.failed(runs).tolist() == [False] * 10 + [True]  # 9.09 = 100 / K: marked; 10 is not


def test_seg_cells_share_budget_and_teacher_and_take_only_the_seg_settings():
    seg = quality.TASKS["seg"]
    cfgs = [quality.run_config(SEG_PAIR, m, s, seg.steps, "runs") for m in seg.methods for s in (0, 1, 2)]
    assert {(c.steps, c.kd_steps, c.batch_size) for c in cfgs} == {(seg.steps, 5, 32)}
    assert {(c.dataset, c.ood, c.teacher, c.student, c.teacher_epochs, c.teacher_seed) for c in cfgs} == \
        {("fmnist_scenes", "scenes:mnist5k", "segnet_small", "segnet_small_half", 0, 0)}
    assert len({c.out_dir for c in cfgs}) == len(cfgs)
    # the seg task's own settings (chosen on its val mIoU): lr_g and w_adv reach the generator methods only,
    # and student_ood=False MosaicKD only
    gen = {c.method: (c.lr_g, c.w_adv) for c in cfgs if c.method in ("mosaickd", "datafree")}
    assert gen == {m: (quality.SEG_SETTINGS[m]["lr_g"], quality.SEG_SETTINGS[m]["w_adv"]) for m in gen}
    assert {c.lr_g for c in cfgs if c.method not in gen} == {RunConfig().lr_g}
    assert {c.method for c in cfgs if not c.student_ood} == {"mosaickd"}
    assert ":" not in cfgs[0].out_dir
    with pytest.raises(KeyError, match="unknown pair 'x<-y'; choose one of .*fmnist_scenes<-scenes:mnist5k"):
        quality.run_config("x<-y", "kd_ood", 0, 4, "runs")


def test_pairs_of_the_other_task_are_refused():
    with pytest.raises(SystemExit):
        quality.main(["--task", "seg", "--pairs", "fmnist<-mnist5k", "--out", "unused"])


@pytest.mark.slow
def test_seg_quick_mode_writes_a_csv_of_miou_with_parameters(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mosaic.bench", "quality", "--task", "seg", "--quick", "--out",
                           str(tmp_path / "b"), "--runs", str(tmp_path / "runs"), "--methods", "kd_ood", "mosaickd"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "b" / "seg_quality_runs.csv")
    assert list(runs["method"]) == ["kd_ood", "mosaickd"] and (runs["steps"] == 4).all()
    assert {"student_miou", "teacher_miou", "pixel_acc", "agreement", "student_miou_valsel"} <= set(runs.columns)
    assert runs["student_miou"].between(0, 100).all() and runs["num_classes"].eq(11).all()
    params = [RunConfig.from_dict(json.loads(p)) for p in runs["params"]]
    assert {(p.dataset, p.ood, p.precision) for p in params} == {("fmnist_scenes", "scenes:mnist5k", "bf16")}
    assert (tmp_path / "b" / "seg_quality.png").exists()
