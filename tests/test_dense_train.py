"""The training loop on the dense task, end to end: fmnist_scenes (shrunk to 256 / 64 / 64 scenes) with
scenes:mnist5k as OOD and the small segmenter pair; metrics.json, selection on val mIoU, resume after SIGKILL."""
import json
import sys

import pytest
import torch

from mosaic.config import RunConfig
from mosaic.data import DatasetNotFoundError, get_dataset, registry
from mosaic.evaluate import score
from mosaic.models import get_model
from mosaic.train import train

from killing import cli_args, kill_midway

pytestmark = pytest.mark.slow

SMALL = {"train": 256, "val": 64, "test": 64}  # scenes per split in these tests


@pytest.fixture(autouse=True)
def small_scenes(monkeypatch):
    for split, n in SMALL.items():
        monkeypatch.setitem(registry.SCENE_COUNTS, split, n)
    try:
        get_dataset("fmnist_scenes", "test")
    except DatasetNotFoundError:
        pytest.skip("needs Fashion-MNIST (data/FashionMNIST or apt-get install dataset-fashion-mnist)")


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("teachers"))


def tiny(tmp_path, teacher_dir, **kw) -> RunConfig:
    base = dict(dataset="fmnist_scenes", ood="scenes:mnist5k", teacher="segnet_small_half", student="segnet_small_half",
                teacher_epochs=2, teacher_dir=teacher_dir, steps=4, kd_steps=1, batch_size=8, z_dim=16, ngf=8, ndf=8,
                eval_every=2, ckpt_every=2, out_dir=str(tmp_path / "run"), device="cpu")
    base.update(kw)
    return RunConfig(**base)


@pytest.mark.filterwarnings("ignore::UserWarning")  # a 4-iteration teacher is weak, and says so
@pytest.mark.parametrize("method", ["mosaickd", "kd_ood"])
def test_a_dense_run_writes_segmentation_metrics(tmp_path, teacher_dir, method):
    res = train(tiny(tmp_path, teacher_dir, method=method), progress=False)
    m = json.loads((res.out_dir / "metrics.json").read_text())
    for key in ("student_miou", "teacher_miou", "pixel_acc", "agreement", "per_class_iou", "student_miou_valsel",
                "valsel_val_miou"):
        assert key in m, key
    assert "student_acc_valsel" not in m and "valsel_val_acc" not in m  # no pixel accuracy under a selection name
    assert 0 <= m["student_miou"] <= 100 and 0 <= m["agreement"] <= 100 and len(m["per_class_iou"]) == 11
    assert m["teacher_info"]["val_miou"] >= 0 and m["method"] == method
    assert (res.out_dir / "samples.png").exists() == (method == "mosaickd")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_dense_resume_after_sigkill_equals_uninterrupted_run(tmp_path, teacher_dir):
    steps = 24
    ref = train(tiny(tmp_path / "ref", teacher_dir, steps=steps, ckpt_every=3, eval_every=6), progress=False)
    cfg = tiny(tmp_path / "killed", teacher_dir, steps=steps, ckpt_every=3, eval_every=6)
    script = ("import sys; from mosaic.data import registry; "
              f"registry.SCENE_COUNTS.update({SMALL!r}); "
              "from mosaic.train import main; main(sys.argv[1:])")
    kill_midway([sys.executable, "-c", script, *cli_args(cfg)], tmp_path / "killed" / "run" / "checkpoint.pt", 0.2, steps)
    res = train(cfg, progress=False)
    assert res.history == ref.history
    for k in ("student_miou", "teacher_miou", "pixel_acc", "agreement", "per_class_iou", "student_miou_valsel",
              "valsel_step"):
        assert res.metrics[k] == ref.metrics[k], k


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_dense_run_records_and_selects_the_student_on_val_miou(tmp_path, teacher_dir):
    res = train(tiny(tmp_path, teacher_dir, method="kd_ood", steps=6, eval_every=2, lr_s=0.3), progress=False)
    evals = [r for r in res.history if "val_miou" in r]
    assert [r["step"] for r in evals] == [2, 4, 6] and not any("val_acc" in r for r in res.history)
    assert "val_miou" in (res.out_dir / "history.csv").read_text().splitlines()[0]
    val, test = get_dataset("fmnist_scenes", "val"), get_dataset("fmnist_scenes", "test")
    assert evals[-1]["val_miou"] == pytest.approx(score(res.players.student, val))  # the final student's val mIoU
    best = max(evals, key=lambda r: r["val_miou"])  # the first of equal maxima, as the loop keeps it
    m = res.metrics
    assert m["valsel_step"] == best["step"] and m["valsel_val_miou"] == best["val_miou"]
    kept = torch.load(res.out_dir / "checkpoint.pt", weights_only=False)["best"]
    assert kept["step"] == best["step"] and kept["val_miou"] == best["val_miou"]
    selected = get_model("segnet_small_half", res.players.teacher.spec)
    selected.load_state_dict(kept["student"])
    assert m["student_miou_valsel"] == pytest.approx(score(selected, test))  # test mIoU of the selected student


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_dense_run_balances_against_the_ood_background_and_resumes_exactly(tmp_path, teacher_dir, monkeypatch):
    """balance_bg='ood': train() sets the balance term's target from the teacher on the OOD scenes, so the term is a
    KL (>= 0) where the paper's is a negative entropy (<= 0); the target is rebuilt on resume, to the same numbers."""
    from killing import interrupted_and_resumed

    cfg = tiny(tmp_path / "full", teacher_dir, balance_bg="ood")
    full = train(cfg, progress=False)
    paper = train(cfg.replace(balance_bg="class", out_dir=str(tmp_path / "paper" / "run")), progress=False)
    assert all(r["loss_balance"] >= 0 for r in full.history) and all(r["loss_balance"] <= 0 for r in paper.history)
    again = interrupted_and_resumed(cfg.replace(out_dir=str(tmp_path / "broken" / "run")), 3, monkeypatch)
    assert again.history == full.history and again.metrics["student_miou"] == full.metrics["student_miou"]
