"""The student's weight EMA (mosaic.ema, RunConfig.ema_s): the average itself, and a run that reports it."""
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from mosaic.config import RunConfig
from mosaic.ema import ema_copy, ema_decay, ema_update
from mosaic.train import load_run, train
from killing import interrupted_and_resumed
from test_train import tiny


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("teachers"))


def test_the_decay_ramps_up_to_its_value():
    assert ema_decay(0.99, 1) == pytest.approx(2 / 11)
    assert ema_decay(0.99, 90) == pytest.approx(0.91)
    assert ema_decay(0.99, 10_000) == 0.99
    assert ema_decay(0.0, 5) == 0.0  # decay 0: the copy is the model


def test_floats_interpolate_and_integers_copy():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = ema_copy(model)
    assert not any(p.requires_grad for p in ema.parameters())
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        for v in model.state_dict().values():
            v.add_(1) if v.is_floating_point() else v.fill_(7)
    ema_update(ema, model, 0.9, n=10_000)
    for k, v in ema.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(v, before[k] + 0.1), k  # 0.9 * old + 0.1 * (old + 1)
        else:
            assert int(v) == 7, k  # BatchNorm's num_batches_tracked
    assert all(p.grad is None for p in ema.parameters())


@pytest.mark.slow
def test_an_ema_run_trains_as_one_without_and_reports_both_students(tmp_path, teacher_dir):
    """The EMA takes no part in the game: the trained student, the losses and its scores are the run without
    EMA's; the run's student (student_acc, val_acc) is the average, and load_run reads it back."""
    plain = train(tiny(tmp_path / "plain", teacher_dir, method="datafree"), progress=False)
    cfg = tiny(tmp_path / "ema", teacher_dir, method="datafree", ema_s=0.9)
    ema = train(cfg, progress=False)
    assert [r["loss_s"] for r in ema.history] == [r["loss_s"] for r in plain.history]
    assert ema.metrics["student_acc_live"] == plain.metrics["student_acc"]
    assert [r.get("val_acc_live") for r in ema.history] == [r.get("val_acc") for r in plain.history]
    averaged, trained = ema.players.student_ema.state_dict(), ema.players.student.state_dict()
    assert any(not torch.equal(averaged[k], trained[k]) for k in trained)  # an average, not a copy
    again = load_run(cfg.out_dir, device="cpu")
    assert all(torch.equal(again.players.student_ema.state_dict()[k], v) for k, v in averaged.items())


@pytest.mark.slow
def test_an_ema_run_resumes_exactly(tmp_path, teacher_dir, monkeypatch):
    cfg = tiny(tmp_path / "full", teacher_dir, ema_s=0.9, steps=4)
    full = train(cfg, progress=False)
    assert "student_ema" in torch.load(Path(cfg.out_dir) / "checkpoint.pt", weights_only=False)["models"]
    again = interrupted_and_resumed(cfg.replace(out_dir=str(tmp_path / "broken" / "run")), 3, monkeypatch)
    assert again.history == full.history
    assert (again.metrics["student_acc"], again.metrics["student_acc_live"]) == \
        (full.metrics["student_acc"], full.metrics["student_acc_live"])


def test_ema_s_is_a_decay_below_one():
    with pytest.raises(ValueError, match="ema_s is a decay"):
        RunConfig(ema_s=1.0)
