"""Run-level knobs of issue 11: the generator terms' gradient norms, the thread count, the teacher's budget."""
import math
import warnings

import pytest
import torch

from mosaic import game, teacher as T
from mosaic.config import RunConfig
from mosaic.data import DatasetNotFoundError
from mosaic.nnutil import num_threads
from mosaic.train import train


def tiny(tmp_path, teacher_dir, **kw) -> RunConfig:
    base = dict(dataset="digits", ood="mnist5k", teacher="cnn_half", student="cnn_half", teacher_epochs=15,
                teacher_dir=str(teacher_dir), steps=4, kd_steps=2, batch_size=16, z_dim=16, ngf=8, ndf=8,
                patch_size=4, eval_every=2, ckpt_every=4, out_dir=str(tmp_path / "run"), device="cpu")
    base.update(kw)
    return RunConfig(**base)


# ----------------------------------------------------------------------------- gradient norms at x

def test_input_grad_norms_are_the_weighted_terms_gradients_at_x():
    x = torch.randn(5, 3, requires_grad=True)
    y = x * 2  # a non-leaf "synthetic batch", as the generator's output is
    cfg = RunConfig(w_align=0.5, w_balance=10.0, w_adv=0.0)
    terms = {"loss_align": (y ** 2).sum(), "loss_balance": y.mean(), "loss_adv": y.sum(), "loss_g": y.sum()}
    got = game.input_grad_norms(terms, y, cfg)
    assert set(got) == {"gx_align", "gx_balance"}  # no local term here; a zero weight is skipped
    # d(0.5·Σy²)/dy = y, per-row norm; d(10·mean y)/dy = 10/15 everywhere: per-row norm sqrt(3)·10/15
    assert got["gx_align"].item() == pytest.approx(y.detach().norm(dim=1).mean().item(), rel=1e-6)
    assert got["gx_balance"].item() == pytest.approx(math.sqrt(3) * 10 / 15, rel=1e-6)
    assert x.grad is None  # read-only: nothing accumulated anywhere


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mosaickd", "datafree"])
def test_gradient_norms_are_logged_on_eval_steps_and_change_no_number(tmp_path, method):
    teachers = tmp_path / "teachers"
    quiet = train(tiny(tmp_path / "a", teachers, method=method, eval_every=0), progress=False)
    logged = train(tiny(tmp_path / "b", teachers, method=method, eval_every=2), progress=False)
    expect = {"gx_align", "gx_balance", "gx_adv"} | ({"gx_local"} if method == "mosaickd" else set())
    for row in logged.history:
        assert (expect <= set(row)) == (row["step"] % 2 == 0), row
        assert all(row[k] >= 0 and math.isfinite(row[k]) for k in expect & set(row))
    for a, b in zip(quiet.history, logged.history):  # the diagnostics change no loss, bit for bit
        assert {k: v for k, v in a.items() if k.startswith("loss")} == {k: v for k, v in b.items() if k.startswith("loss")}
    assert quiet.metrics["student_acc"] == logged.metrics["student_acc"]


# ----------------------------------------------------------------------------- threads

def test_num_threads_sets_and_restores():
    before = torch.get_num_threads()
    with num_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with num_threads(0):  # 0 leaves torch's setting alone
        assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), num_threads(1):
        raise RuntimeError("restored on an error too")
    assert torch.get_num_threads() == before


def test_threads_is_validated_and_changes_results():
    assert RunConfig().threads == 1
    with pytest.raises(ValueError, match="threads"):
        RunConfig(threads=-1)
    assert not RunConfig(threads=1).same_results(RunConfig(threads=2))  # reductions split differently


@pytest.mark.slow
def test_a_run_plays_at_its_thread_count(tmp_path, monkeypatch):
    seen = []
    real = game.STEPS["kd_ood"]

    def spy(*args, **kw):
        seen.append(torch.get_num_threads())
        return real(*args, **kw)

    monkeypatch.setitem(game.STEPS, "kd_ood", spy)
    before = torch.get_num_threads()
    train(tiny(tmp_path, tmp_path / "teachers", method="kd_ood", threads=1), progress=False)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before


# ----------------------------------------------------------------------------- the teacher's budget

def test_auto_epochs_follow_the_data():
    per_epoch = {54000: 421, 3600: 28, 1295: 10}  # fmnist, mnist5k, digits train splits at batch 128
    for n, it in per_epoch.items():
        e = T.auto_epochs(n, 128)
        assert e * it >= T.AUTO_ITERATIONS > (e - 1) * it
    assert T.auto_epochs(50, 128) == T.AUTO_ITERATIONS  # a batch larger than the data: one iteration per epoch


def test_resolve_and_cache_path():
    cfg = T.TeacherConfig(dataset="digits", arch="cnn_half")
    assert cfg.epochs == 0 and RunConfig().teacher_epochs == 0  # auto by default
    assert T.resolve(cfg).epochs == T.auto_epochs(1295, 128)
    assert T.resolve(T.TeacherConfig(epochs=7)).epochs == 7
    assert T.cache_path(cfg, "c").name == f"digits_cnn_half_e{T.auto_epochs(1295, 128)}_s0.pt"
    assert T.cache_path(T.TeacherConfig(epochs=3, threads=2), "c").name == "fmnist_lenet5_e3_s0_t2.pt"


def test_a_short_teacher_warns_and_an_auto_one_does_not(tmp_path, monkeypatch):
    monkeypatch.setattr(T, "AUTO_ITERATIONS", 40)  # digits: 10 iterations per epoch
    with pytest.warns(T.WeakTeacherWarning, match=r"trained for 20 SGD iterations .*teacher_epochs=0"):
        _, info = T.get_teacher(T.TeacherConfig(dataset="digits", arch="cnn_half", epochs=2), tmp_path, progress=False)
    assert info["iterations"] == 20 and len(info["val_curve"]) == 2 and info["config"]["threads"] == 1
    with pytest.warns(T.WeakTeacherWarning):  # from the cache too
        T.get_teacher(T.TeacherConfig(dataset="digits", arch="cnn_half", epochs=2), tmp_path, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", T.WeakTeacherWarning)
        _, info = T.get_teacher(T.TeacherConfig(dataset="digits", arch="cnn_half"), tmp_path, progress=False)
    assert info["config"]["epochs"] == 4 and info["iterations"] == 40


def test_each_task_has_its_own_auto_budget_and_batch():
    assert T.auto_budget("classification") == (T.AUTO_ITERATIONS, T.AUTO_BATCH) == (8000, 128)
    assert T.auto_budget("segmentation") == (T.DENSE_AUTO_ITERATIONS, T.DENSE_AUTO_BATCH) == (1248, 32)
    assert T.TeacherConfig().batch_size == 0  # auto: the task's batch
    assert T.resolve(T.TeacherConfig(epochs=7)).batch_size == 128  # classification: as before
    assert T.resolve(T.TeacherConfig(dataset="fmnist_scenes", arch="segnet_small", epochs=2)).batch_size == 32
    dense = T.TeacherConfig(dataset="fmnist_scenes", arch="segnet_small", epochs=4)
    assert T.cache_path(dense, "c").name == "fmnist_scenes_segnet_small_e4_s0.pt"  # the task's batch: no suffix
    assert T.cache_path(T.TeacherConfig(dataset="fmnist_scenes", arch="segnet_small", epochs=4, batch_size=64),
                        "c").name == "fmnist_scenes_segnet_small_e4_s0_b64.pt"
    assert T.cache_path(T.TeacherConfig(epochs=3, batch_size=64, threads=2), "c").name == "fmnist_lenet5_e3_s0_b64_t2.pt"


def test_auto_epochs_of_a_dense_teacher_give_its_iterations(monkeypatch):
    from mosaic.data import registry

    monkeypatch.setitem(registry.SCENE_COUNTS, "train", 320)  # 10 iterations per epoch at batch 32
    monkeypatch.setattr(T, "DENSE_AUTO_ITERATIONS", 45)
    try:
        cfg = T.resolve(T.TeacherConfig(dataset="fmnist_scenes", arch="segnet_small_half"))
    except DatasetNotFoundError:
        pytest.skip("needs Fashion-MNIST")
    assert (cfg.batch_size, cfg.epochs) == (32, 5)  # ceil(45 / 10)


def info(task: str, iterations: int, batch: int) -> dict:
    val = {"val_miou": 50.0} if task == "segmentation" else {"val_acc": 90.0}
    return {"iterations": iterations, "config": {"arch": "a", "dataset": "d", "epochs": 1, "batch_size": batch}, **val}


@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_weak_means_fewer_images_than_the_task_budget_whatever_the_batch(task):
    iterations, batch = T.auto_budget(task)
    for it, b in ((iterations, batch), (iterations // 2, batch * 2), (iterations * 2, batch // 2)):  # as many images
        with warnings.catch_warnings():
            warnings.simplefilter("error", T.WeakTeacherWarning)
            T.warn_if_weak(info(task, it, b))
    metric = "mIoU" if task == "segmentation" else "accuracy"
    with pytest.warns(T.WeakTeacherWarning, match=rf"val {metric} .* fewer images than the {task} auto budget of "
                                                  rf"{iterations} at batch {batch}"):
        T.warn_if_weak(info(task, iterations // 2 - 1, batch * 2))
