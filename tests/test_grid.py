"""mosaic.grid: expansion, skip-if-done, resumable execution and aggregation of metrics.json files."""
import json
import math
from pathlib import Path

import pytest

from mosaic import grid
from mosaic.config import RunConfig

BASE = {"steps": 30, "batch_size": 16}


def write_metrics(run: grid.GridRun, student_acc: float, **config_changes) -> Path:
    """A hand-made metrics.json in the run's folder, as mosaic.train writes it."""
    cfg = run.config.replace(**config_changes).to_dict()
    m = {"method": cfg["method"], "dataset": cfg["dataset"], "ood": cfg["ood"], "steps": cfg["steps"],
         "student_acc": student_acc, "teacher_acc": 85.0, "agreement": student_acc + 1.0,
         "per_class_acc": [student_acc] * 10, "student_acc_valsel": student_acc - 0.5, "wall_s": 1.0,
         "teacher_info": {"cached": True}, "config": cfg}
    run.out_dir.mkdir(parents=True, exist_ok=True)
    run.metrics_path.write_text(json.dumps(m))
    return run.metrics_path


# ----------------------------------------------------------------------------- expansion

def test_expand_crosses_rows_with_seeds_row_major(tmp_path):
    runs = grid.expand({"full": {}, "no_local": {"w_local": 0.0}}, BASE, seeds=[0, 1], out_root=tmp_path)
    assert [(r.name, r.seed) for r in runs] == [("full", 0), ("full", 1), ("no_local", 0), ("no_local", 1)]
    assert all(r.config.steps == 30 and r.config.batch_size == 16 for r in runs)
    assert [r.config.w_local for r in runs] == [1.0, 1.0, 0.0, 0.0]
    assert [r.config.seed for r in runs] == [0, 1, 0, 1]
    assert runs[0].out_dir == tmp_path / "batch_size=16,steps=30" / "seed0"
    assert runs[3].out_dir == tmp_path / "batch_size=16,steps=30,w_local=0.0" / "seed1"
    assert runs[0].group == ""


def test_expand_grouped_grid_and_equal_configs_share_a_folder(tmp_path):
    spec = {"reference": {"MosaicKD": {}, "KD": {"method": "kd_ood"}},
            "discriminator": {"patch 10": {"patch_size": 10}, "patch 4": {"patch_size": 4}}}
    runs = grid.expand(spec, out_root=tmp_path)
    assert [(r.group, r.name) for r in runs] == [("reference", "MosaicKD"), ("reference", "KD"),
                                                 ("discriminator", "patch 10"), ("discriminator", "patch 4")]
    assert runs[0].out_dir == runs[2].out_dir == tmp_path / "default" / "seed0"  # patch 10 is the default
    assert [r.name for r in grid.unique_runs(runs)] == ["MosaicKD", "KD", "patch 4"]


def test_run_label_ignores_neutral_fields_and_int_float_spelling():
    cfg = RunConfig(w_local=0, steps=5)
    assert grid.run_label(cfg) == grid.run_label(RunConfig(w_local=0.0, steps=5)) == "steps=5,w_local=0.0"
    assert grid.run_label(cfg.replace(device="cpu", eval_every=1, out_dir="x", data_root="y")) == "steps=5,w_local=0.0"
    assert grid.run_label(cfg.replace(seed=3)) == "steps=5,w_local=0.0"  # the seed is a folder level of its own


def test_run_label_of_paths_and_long_diffs_is_safe_and_unique():
    a = grid.run_label(RunConfig(ood="folder:data/my photos"))
    b = grid.run_label(RunConfig(ood="folder:data/my_photos"))
    assert "/" not in a and " " not in a and a != b  # replaced characters add a hash
    long = RunConfig(ood="folder:" + "x" * 200)
    assert len(grid.run_label(long)) <= grid.MAX_LABEL
    assert grid.run_label(long) != grid.run_label(RunConfig(ood="folder:" + "x" * 199))


def test_expand_rejects_bad_rows(tmp_path):
    with pytest.raises(ValueError, match="'bad'.*w_locl"):
        grid.expand({"bad": {"w_locl": 0.0}}, out_root=tmp_path)
    with pytest.raises(ValueError, match="'bad'.*method"):
        grid.expand({"bad": {"method": "nope"}}, out_root=tmp_path)
    with pytest.raises(ValueError, match="seeds / out_root"):
        grid.expand({"bad": {"seed": 1}}, out_root=tmp_path)
    with pytest.raises(ValueError, match="unique"):
        grid.expand({"g1": {"a": {}}, "g2": {"a": {"steps": 3}}}, out_root=tmp_path)
    with pytest.raises(TypeError, match="dict of RunConfig overrides"):
        grid.expand({"bad": 3}, out_root=tmp_path)


def test_status_and_train_share_runconfigs_notion_of_same_results(tmp_path):
    run = grid.expand({"full": {}}, BASE, out_root=tmp_path)[0]
    write_metrics(run, 50.0, device="cpu", eval_every=7, compile=True)  # neutral fields only
    assert grid.status(run) == "done"
    write_metrics(run, 50.0, lr_s=0.05)
    with pytest.raises(grid.StaleRunError, match="lr_s"):
        grid.status(run)


def test_ablation_grid_rows():
    spec = grid.ablation_grid(patch_sizes=[4, 18], ood_sources={"digits": "digits"})
    assert list(spec) == ["reference", "loss", "discriminator", "ood"]
    assert spec["loss"] == {"w_local=0": {"w_local": 0.0}, "w_align=0": {"w_align": 0.0},
                            "w_balance=0": {"w_balance": 0.0}, "w_adv=0": {"w_adv": 0.0}}
    assert spec["discriminator"]["no D"] == {"discriminator": "none"}
    assert spec["discriminator"]["full-image D"] == {"discriminator": "full"}
    assert spec["discriminator"]["patch 18"] == {"discriminator": "patch", "patch_size": 18}
    assert spec["ood"] == {"OOD digits": {"ood": "digits"}}
    assert list(grid.ablation_grid(["loss"])) == ["loss"]
    with pytest.raises(ValueError, match="unknown ablation group"):
        grid.ablation_grid(["losses"])


# ----------------------------------------------------------------------------- skip-if-done

def test_status_todo_partial_done_and_stale(tmp_path):
    run = grid.expand({"full": {}}, BASE, out_root=tmp_path)[0]
    assert grid.status(run) == "todo"
    run.out_dir.mkdir(parents=True)
    (run.out_dir / "checkpoint.pt").write_bytes(b"")
    assert grid.status(run) == "partial"
    write_metrics(run, 50.0, device="cuda", eval_every=7)  # neutral fields may differ
    assert grid.status(run) == "done"
    write_metrics(run, 50.0, lr_s=0.5)
    with pytest.raises(grid.StaleRunError, match=r"lr_s.*\(0\.5, 0\.1\)"):
        grid.status(run)


def test_status_done_for_a_metrics_json_written_before_a_field_existed(tmp_path):
    run = grid.expand({"full": {}}, BASE, out_root=tmp_path)[0]
    path = write_metrics(run, 50.0)
    m = json.loads(path.read_text())
    del m["config"]["t_kd"]  # an older RunConfig without this field: its default applies
    path.write_text(json.dumps(m))
    assert grid.status(run) == "done"
    m["config"]["no_such_field"] = 1  # a field this RunConfig does not know: not the same config
    path.write_text(json.dumps(m))
    with pytest.raises(grid.StaleRunError):
        grid.status(run)


def test_run_grid_skips_done_runs_and_runs_each_folder_once(tmp_path, monkeypatch):
    runs = grid.expand({"A": {}, "B": {"w_adv": 0.0}, "A again": {"w_adv": 1.0}}, BASE, seeds=[0, 1], out_root=tmp_path)
    write_metrics(runs[0], 60.0)  # A, seed 0 is done
    trained = []

    def fake_train(cfg):
        trained.append((cfg.w_adv, cfg.seed))
        write_metrics(next(r for r in runs if r.config == cfg), 40.0 + cfg.seed)

    monkeypatch.setattr(grid, "_train_api", fake_train)
    rows = grid.run_grid(runs, log=None)
    assert trained == [(1.0, 1), (0.0, 0), (0.0, 1)]  # "A again" equals "A": no folder of its own
    assert [r["status"] for r in rows] == ["skipped", "ran", "ran", "ran"]
    trained.clear()
    rows = grid.run_grid(runs, log=None)  # everything done: nothing runs
    assert trained == [] and {r["status"] for r in rows} == {"skipped"}


def test_run_grid_keep_going_records_failures_then_raises(tmp_path, monkeypatch):
    runs = grid.expand({"A": {}, "B": {"w_adv": 0.0}}, BASE, out_root=tmp_path)
    calls = []

    def fail_first(cfg):
        calls.append(cfg.w_adv)
        if cfg.w_adv == 1.0:
            raise FloatingPointError("loss_g became nan")
        write_metrics(runs[1], 40.0)

    monkeypatch.setattr(grid, "_train_api", fail_first)
    with pytest.raises(FloatingPointError):
        grid.run_grid(runs, log=None)
    assert calls == [1.0]
    calls.clear()
    with pytest.raises(RuntimeError, match="1 of 2 runs failed") as info:
        grid.run_grid(runs, keep_going=True, log=None)
    assert calls == [1.0, 0.0] and isinstance(info.value.__cause__, FloatingPointError)  # B ran after A failed
    assert grid.status(runs[1]) == "done"


@pytest.mark.slow
def test_run_grid_trains_through_the_library_and_resumes_nothing_twice(tmp_path):
    root = Path(__file__).resolve().parents[1]
    base = dict(dataset="digits", ood="mnist5k", teacher="cnn_half", student="cnn_half", teacher_epochs=2,
                steps=2, kd_steps=1, batch_size=16, patch_size=4, ngf=8, ndf=8, data_root=str(root / "data"),
                teacher_dir=str(tmp_path / "teachers"))
    runs = grid.expand({"MosaicKD": {}, "KD on OOD": {"method": "kd_ood"}}, base, out_root=tmp_path / "runs")
    assert [r["status"] for r in grid.run_grid(runs, log=None)] == ["ran", "ran"]
    assert [r["status"] for r in grid.run_grid(runs, log=None)] == ["skipped", "skipped"]
    table = grid.collect(runs)
    assert list(table["method"]) == ["mosaickd", "kd_ood"] and table["done"].all()
    assert table["student_acc"].between(0, 100).all()


# ----------------------------------------------------------------------------- aggregation

def test_collect_reads_metrics_per_row_and_seed(tmp_path):
    runs = grid.expand({"g": {"full": {}, "no_adv": {"w_adv": 0.0}}}, BASE, seeds=[0, 1], out_root=tmp_path)
    for run, acc in zip(runs, [60.0, 62.0, 50.0]):  # no_adv seed 1 is not done
        write_metrics(run, acc)
    table = grid.collect(runs)
    assert list(table["name"]) == ["full", "full", "no_adv", "no_adv"]
    assert list(table["group"]) == ["g"] * 4 and list(table["seed"]) == [0, 1, 0, 1]
    assert list(table["done"]) == [True, True, True, False]
    assert table["student_acc"].iloc[:3].tolist() == [60.0, 62.0, 50.0] and math.isnan(table["student_acc"].iloc[3])
    assert table["w_adv"].tolist() == [1.0, 1.0, 0.0, 0.0]  # config fields are columns (done or not)
    assert table["agreement"].iloc[0] == 61.0 and table["student_acc_valsel"].iloc[1] == 61.5
    assert "per_class_acc" not in table and "config" not in table
    assert math.isnan(table["student_miou"].iloc[3])  # a segmentation grid's columns exist before any run is done
    nothing_done = grid.collect(runs[3:])
    assert grid.summarize(nothing_done, value="student_miou").empty


def test_summarize_mean_std_n_and_gap_to_reference(tmp_path):
    runs = grid.expand({"full": {}, "no_adv": {"w_adv": 0.0}}, BASE, seeds=[0, 1, 2], out_root=tmp_path)
    for run, acc in zip(runs, [60.0, 62.0, 64.0, 50.0, 54.0]):  # no_adv seed 2 missing
        write_metrics(run, acc)
    s = grid.summarize(grid.collect(runs), reference="full")
    assert list(s["name"]) == ["full", "no_adv"]
    assert s["mean"].tolist() == pytest.approx([62.0, 52.0])
    assert s["std"].tolist() == pytest.approx([2.0, 2.8284271])  # sample std (ddof 1), as pandas
    assert s["n"].tolist() == [3, 2]
    assert s["vs_full"].tolist() == pytest.approx([0.0, -10.0])
    assert s["vs_full_se"].tolist() == pytest.approx([0.0, 1.0])  # paired by seed: -10, -8 -> std 1.414 / sqrt(2)
    with pytest.raises(ValueError, match="reference row 'nope'"):
        grid.summarize(grid.collect(runs), reference="nope")


def test_load_metrics_reads_every_metrics_json_under_a_folder(tmp_path):
    runs = grid.expand({"a": {}, "b": {"method": "kd_ood"}}, BASE, out_root=tmp_path)
    for run, acc in zip(runs, [70.0, 30.0]):
        write_metrics(run, acc)
    (tmp_path / "stray.txt").write_text("not a run")
    table = grid.load_metrics(tmp_path)
    assert sorted(table["student_acc"]) == [30.0, 70.0]
    assert set(table["method"]) == {"mosaickd", "kd_ood"}
    assert set(table["out_dir"]) == {str(r.out_dir) for r in runs}
    assert table["betas"].iloc[0] == (0.5, 0.999)


# ----------------------------------------------------------------------------- notebooks as references

def test_strip_execution_metadata(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"papermill": {"duration": 3.0}, "widgets": {"state": {}}})
    injected = nbformat.v4.new_code_cell("# Parameters\n", metadata={"tags": ["injected-parameters"]})
    kept = nbformat.v4.new_code_cell("x = 1", metadata={"tags": [], "papermill": {"duration": 1.0},
                                                        "execution": {"iopub.status.busy": "t"}})
    params = nbformat.v4.new_code_cell("# Parameters\nsteps = 3\n", metadata={"tags": ["injected-parameters"]})
    nb.cells = [injected, kept, params]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, str(path))
    grid.strip_execution_metadata(path)
    out = nbformat.read(str(path), as_version=4)
    assert "papermill" not in out.metadata and "widgets" not in out.metadata
    assert [c.source for c in out.cells] == ["x = 1", "# Parameters\nsteps = 3\n"]  # the empty injection is gone
    assert out.cells[0].metadata == {} and out.cells[1].metadata == {"tags": ["injected-parameters"]}
    assert set(out.metadata) <= {"kernelspec", "language_info"}
    assert dict(out.cells[0].metadata) == {}


def test_summarize_also_adds_means_of_other_columns(tmp_path):
    runs = grid.expand({"full": {}}, BASE, seeds=[0, 1], out_root=tmp_path)
    for run, acc in zip(runs, [60.0, 62.0]):
        write_metrics(run, acc)
    s = grid.summarize(grid.collect(runs), also=("agreement", "student_acc_valsel"))
    assert s["agreement"].tolist() == [62.0] and s["student_acc_valsel"].tolist() == [60.5]
    one = grid.summarize(grid.collect(runs[:1]))
    assert one["n"].tolist() == [1] and math.isnan(one["std"].iloc[0])  # one seed: no spread to report


@pytest.mark.slow
def test_run_grid_through_papermill_keeps_every_parameter(tmp_path):
    root = Path(__file__).resolve().parents[1]
    base = dict(dataset="digits", ood="mnist5k", teacher="cnn_half", student="cnn_half", teacher_epochs=2,
                steps=2, kd_steps=1, batch_size=16, patch_size=4, ngf=8, ndf=8, t_kd=2.0,  # t_kd: not in 02's cell
                data_root=str(root / "data"), teacher_dir=str(tmp_path / "teachers"))
    runs = grid.expand({"MosaicKD": {}}, base, out_root=tmp_path / "runs")
    rows = grid.run_grid(runs, backend="papermill", notebook=root / "notebooks" / "02_train.ipynb", log=None)
    assert [r["status"] for r in rows] == ["ran"]
    assert grid.status(runs[0]) == "done"  # metrics.json holds exactly the asked config
    assert (runs[0].out_dir / "02_train.ipynb").exists()


def test_run_grid_checks_every_row_before_training_any(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(grid, "_train_api", lambda cfg: calls.append(cfg))
    runs = grid.expand({"ok": {}, "too big": {"patch_size": 100}}, BASE, out_root=tmp_path)
    with pytest.raises(ValueError, match=r"grid row 'too big' .*patch_size=100 is larger than the 28x28 images"):
        grid.run_grid(runs, log=None)
    assert calls == [] and not list(tmp_path.iterdir())
