"""logger='tensorboard': history rows, evaluation numbers and sample grids as event files in the run folder,
without changing the run's numbers."""
import pytest

from mosaic.board import Board
from mosaic.config import RunConfig
from mosaic.train import train


def events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def test_logger_is_a_neutral_choice():
    assert RunConfig(logger="tensorboard").same_results(RunConfig())
    with pytest.raises(ValueError, match="logger='wandb'.*none, tensorboard"):
        RunConfig(logger="wandb")


def test_a_disabled_board_writes_nothing(tmp_path):
    board = Board(tmp_path, enabled=False)
    board.row({"step": 1, "loss_s": 1.0})
    board.close()
    assert list(tmp_path.iterdir()) == []


def test_flush_puts_pending_events_on_disk_before_close(tmp_path):
    board = Board(tmp_path, enabled=True)
    board.row({"step": 1, "loss_s": 0.5})
    board.flush()  # no close: a SIGKILL after a checkpoint keeps what flush wrote
    assert [(e.step, e.value) for e in events(tmp_path).Scalars("loss_s")] == [(1, 0.5)]
    board.close()


@pytest.mark.slow
def test_a_run_logs_every_row_eval_numbers_and_samples_to_tensorboard(tmp_path):
    cfg = RunConfig(dataset="digits", ood="mnist5k", teacher="cnn_half", student="cnn_half", teacher_epochs=2,
                    teacher_dir=str(tmp_path / "teachers"), steps=4, kd_steps=1, batch_size=16, z_dim=16, ngf=8,
                    ndf=8, patch_size=4, eval_every=2, ckpt_every=2, out_dir=str(tmp_path / "run"), device="cpu")
    plain = train(cfg, progress=False)
    logged = train(cfg.replace(out_dir=str(tmp_path / "logged"), logger="tensorboard"), progress=False)
    assert logged.history == plain.history and logged.metrics["student_acc"] == plain.metrics["student_acc"]
    assert not list((tmp_path / "run").glob("events.out.tfevents.*"))
    acc = events(tmp_path / "logged")
    tags = acc.Tags()
    loss_s = acc.Scalars("loss_s")
    assert [e.step for e in loss_s] == [1, 2, 3, 4]
    assert [round(e.value, 5) for e in loss_s] == [round(r["loss_s"], 5) for r in plain.history]
    assert [(e.step, round(e.value, 4)) for e in acc.Scalars("val_acc")] == \
        [(r["step"], round(r["val_acc"], 4)) for r in plain.history if "val_acc" in r]
    assert {"loss_g", "loss_d", "lr_s", "final/student_acc", "final/agreement"} <= set(tags["scalars"])
    assert acc.Scalars("final/student_acc")[0].value == pytest.approx(plain.metrics["student_acc"])
    assert [e.step for e in acc.Images("samples")] == [2, 4]


@pytest.mark.slow
def test_a_resumed_run_shows_each_step_once(tmp_path, monkeypatch):
    import mosaic.train as T

    cfg = RunConfig(dataset="digits", ood="mnist5k", method="kd_ood", teacher="cnn_half", student="cnn_half",
                    teacher_epochs=2, teacher_dir=str(tmp_path / "teachers"), steps=6, kd_steps=1, batch_size=16,
                    eval_every=0, ckpt_every=2, out_dir=str(tmp_path / "run"), device="cpu", logger="tensorboard")
    real = T.iterate

    def dies_at_4(*args):
        if args[-1] == 4:
            raise KeyboardInterrupt
        return real(*args)

    flushed, real_flush = [], T.Board.flush
    monkeypatch.setattr(T.Board, "flush", lambda self: (real_flush(self), flushed.append(1)))
    monkeypatch.setattr(T, "iterate", dies_at_4)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)  # rows 1-3 logged, the checkpoint holds step 2
    monkeypatch.setattr(T, "iterate", real)
    res = train(cfg, progress=False)  # resumes at step 3: its row is logged again
    assert len(flushed) == 1 + 2  # at each checkpoint: step 2 of the first try; steps 4 and 6 after the resume
    loss_s = events(tmp_path / "run").Scalars("loss_s")
    assert [e.step for e in loss_s] == [1, 2, 3, 4, 5, 6]
    assert [round(e.value, 5) for e in loss_s] == [round(r["loss_s"], 5) for r in res.history]
