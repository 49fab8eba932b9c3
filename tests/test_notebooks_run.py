"""The main-job notebooks run under papermill with overridden parameters (tiny offline settings)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
TINY = dict(dataset="digits", ood="mnist5k", teacher="cnn_half", student="cnn_half", teacher_epochs=15,
            steps=4, kd_steps=2, batch_size=32, patch_size=4, ngf=8, ndf=8, eval_every=2)


def papermill(nb: str, out: Path, params: dict, cwd: Path) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / nb), str(out), "--cwd", str(cwd),
            "-k", "python3", "--no-progress-bar"]
    for k, v in params.items():
        args += ["-p", k, str(v)]
    return subprocess.run(args, capture_output=True, text=True, timeout=600)


def test_02_train_runs_and_writes_metrics(tmp_path):
    out_dir = tmp_path / "run"
    params = {**TINY, "method": "mosaickd", "out_dir": out_dir, "data_root": ROOT / "data",
              "teacher_dir": tmp_path / "teachers"}
    proc = papermill("02_train.ipynb", tmp_path / "out.ipynb", params, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((out_dir / "metrics.json").read_text())
    for key in ("method", "dataset", "ood", "steps", "student_acc", "teacher_acc", "agreement", "wall_s"):
        assert key in m
    assert m["steps"] == 4 and m["dataset"] == "digits" and m["config"]["patch_size"] == 4


def test_02_train_fails_clearly_when_ood_data_is_missing(tmp_path):
    params = {**TINY, "ood": "cifar10", "out_dir": tmp_path / "run", "data_root": tmp_path / "empty",
              "teacher_dir": tmp_path / "teachers"}
    proc = papermill("02_train.ipynb", tmp_path / "out.ipynb", params, tmp_path)
    assert proc.returncode != 0
    text = proc.stderr + (tmp_path / "out.ipynb").read_text()
    assert "DatasetNotFoundError" in text and "download=True" in text


def test_01_teacher_runs(tmp_path):
    params = dict(dataset="digits", arch="cnn_half", epochs=2, cache_dir=tmp_path / "t", data_root=ROOT / "data")
    proc = papermill("01_teacher.ipynb", tmp_path / "out.ipynb", params, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((tmp_path / "t").glob("digits_cnn_half_e2_s0.pt"))
