"""mosaic.jobs and run_grid's executors: Slurm parameters (mapped, never submitted here), a tiny grid through
submitit's local executor (2 at once) against the in-process grid, re-submission, and the status view."""
import os
from pathlib import Path

import pandas as pd
import pytest

from mosaic import grid, jobs

ROOT = Path(__file__).resolve().parents[1]


def test_slurm_parameters_become_the_sbatch_lines():
    from submitit.slurm.slurm import _make_sbatch_string

    params = jobs.slurm_parameters(partition="gpu", time_min=90, gpus_per_task=1, cpus_per_task=8,
                                   array_parallelism=4, mem_gb=32, setup=["module load cuda"], account="lab")
    assert params == {"time": 90, "nodes": 1, "ntasks_per_node": 1, "cpus_per_task": 8, "array_parallelism": 4,
                      "setup": ["module load cuda"], "account": "lab", "gpus_per_node": 1, "partition": "gpu",
                      "mem": "32GB"}
    sbatch = _make_sbatch_string(command="python -m submitit.core._submit X", folder="/tmp/jobs", map_count=6,
                                 **params)
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=90", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --array=0-5%4", "#SBATCH --mem=32GB",
                 "#SBATCH --account=lab", "module load cuda"):
        assert line in sbatch, line
    assert "--gpus-per-node" not in "".join(f"{k}={v}" for k, v in jobs.slurm_parameters(gpus_per_task=0).items())
    with pytest.raises(ValueError, match="time_min=0"):
        jobs.slurm_parameters(time_min=0)


def test_unknown_executors_are_refused_with_the_choices(tmp_path):
    with pytest.raises(ValueError, match="inprocess, local, slurm"):
        jobs.make_executor("ray", tmp_path)
    runs = grid.expand({"a": {}}, {"steps": 2}, out_root=tmp_path)
    with pytest.raises(ValueError, match="inprocess, local, slurm"):
        grid.run_grid(runs, executor="ray", log=None)


def test_the_jobs_folder_sits_next_to_the_label_folders(tmp_path):
    runs = grid.expand({"a": {}, "b": {"w_adv": 0.0}}, {"steps": 2}, seeds=[0, 1], out_root=tmp_path / "grid")
    assert grid.jobs_folder(runs) == tmp_path / "grid" / "_jobs"


@pytest.mark.slow
def test_a_grid_through_the_local_executor_matches_the_in_process_grid(tmp_path):
    base = dict(dataset="digits", ood="mnist5k", teacher="cnn_half", student="cnn_half", teacher_epochs=2,
                steps=3, kd_steps=1, batch_size=16, patch_size=4, ngf=8, ndf=8, z_dim=16, eval_every=0,
                data_root=str(ROOT / "data"), teacher_dir=str(tmp_path / "teachers"), device="cpu")
    spec = {"MosaicKD": {}, "KD on OOD": {"method": "kd_ood"}}
    here = grid.expand(spec, base, out_root=tmp_path / "inprocess")
    assert [r["status"] for r in grid.run_grid(here, log=None)] == ["ran", "ran"]  # also caches the teacher
    spec["broken"] = {"method": "kd_ood", "ood": "folder:" + str(tmp_path / "no_such_folder")}  # fails in its job
    there = grid.expand(spec, base, out_root=tmp_path / "local")
    with pytest.raises(RuntimeError, match=r"1 of 3 runs failed.*no_such_folder"):
        grid.run_grid(there, executor="local", parallel=2, log=None)
    view = grid.job_status(there)
    assert list(view["state"]) == ["done", "done", "failed"]
    assert Path(view["log"].iloc[2]).exists() and "no_such_folder" in Path(view["log"].iloc[2]).read_text()
    a, b = grid.collect(here), grid.collect(there[:2])
    for column in ("student_acc", "agreement", "teacher_acc", "student_acc_valsel"):
        pd.testing.assert_series_equal(a[column], b[column], check_names=False)
    for x, y in zip(here, there):
        assert (x.out_dir / "history.csv").read_text() == (y.out_dir / "history.csv").read_text()
    index = jobs.read_index(grid.jobs_folder(there))
    rows = grid.run_grid(there[:2], executor="local", parallel=2, log=None)  # re-submitted: nothing left to do
    assert [r["status"] for r in rows] == ["skipped", "skipped"] and jobs.read_index(grid.jobs_folder(there)) == index


# ----------------------------------------------------------------------------- the status view

def test_job_states_from_results_processes_and_slurm(tmp_path, monkeypatch):
    import pickle
    import subprocess
    import sys

    import submitit

    def record(job_id, executor="local"):
        return {"executor": executor, "job_id": str(job_id), "stderr": str(tmp_path / f"{job_id}_0_log.err")}

    assert jobs.job_state(record(os.getpid()), tmp_path) == "running"  # a live process, no result yet
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert jobs.job_state(record(int(gone.stdout)), tmp_path) == "failed"  # gone without a result: killed
    for job_id, outcome, state in ((11, ("error", "Traceback ..."), "failed"), (12, ("success", None), "ended")):
        (tmp_path / f"{job_id}_0_result.pkl").write_bytes(pickle.dumps(outcome))
        assert jobs.job_state(record(job_id), tmp_path) == state

    class FakeSlurmJob:
        states = {"21_0": "PENDING", "21_1": "RUNNING", "21_2": "TIMEOUT", "21_3": "CANCELLED by 42"}

        def __init__(self, folder, job_id):
            self.state = self.states[job_id]

    monkeypatch.setattr(submitit, "SlurmJob", FakeSlurmJob)
    assert [jobs.job_state(record(f"21_{i}", "slurm"), tmp_path) for i in range(4)] == \
        ["queued", "running", "failed", "failed"]


def test_job_status_lists_every_run_with_its_state_log_and_events(tmp_path):
    import json
    import pickle

    runs = grid.expand({"a": {}, "b": {"w_adv": 0.0}, "c": {"w_adv": 0.5}, "d": {"w_adv": 0.2}}, {"steps": 2},
                       out_root=tmp_path)
    folder = grid.jobs_folder(runs)
    folder.mkdir()
    runs[0].out_dir.mkdir(parents=True)
    runs[0].metrics_path.write_text(json.dumps({"config": runs[0].config.to_dict()}))  # done
    (runs[0].out_dir / "events.out.tfevents.1.host").write_bytes(b"")
    (folder / "7_0_result.pkl").write_bytes(pickle.dumps(("error", "Traceback ...")))
    index = {str(runs[1].out_dir): {"executor": "local", "job_id": "7", "stderr": str(folder / "7_0_log.err")},
             str(runs[2].out_dir): {"executor": "local", "job_id": str(os.getpid()), "stderr": "x"}}
    (folder / "index.json").write_text(json.dumps(index))
    view = grid.job_status(runs)
    assert list(view["state"]) == ["done", "failed", "running", "todo"]
    assert list(view["log"]) == ["", str(folder / "7_0_log.err"), "", ""]
    assert list(view["tensorboard"]) == [str(runs[0].out_dir), "", "", ""]
