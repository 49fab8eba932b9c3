"""Nothing silent: bad inputs fail with a message before anything is created, and no run folder is lost or poisoned.

Each test here reproduces one way a run could go silently wrong (non-finite checkpoints, loose booleans, a
teacher of another task, two writers on one folder, half-written files, 16-bit photos, orphaned temp files,
meaningless sizes) or end in a raw traceback, and checks the message that replaced it.
"""
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mosaic import checkpoint, game
from mosaic.config import RunConfig
from mosaic.data.folder import load_folder
from mosaic.teacher import TeacherConfig, get_teacher
from mosaic.train import NonFiniteLossError, main, train

ROOT = Path(__file__).resolve().parents[1]
DATA = str(ROOT / "data")


@pytest.fixture(scope="module")
def teachers(tmp_path_factory) -> dict[str, Path]:
    """Small cached teachers: digits/cnn_half (the tiny runs' own) and digits/lenet5 (another architecture)."""
    root = tmp_path_factory.mktemp("teachers")
    out = {}
    for arch in ("cnn_half", "lenet5"):
        cfg = TeacherConfig(dataset="digits", arch=arch, epochs=2, data_root=DATA)
        _, info = get_teacher(cfg, root, progress=False)
        out[arch] = Path(info["path"])
    return out


def tiny(tmp_path: Path, teacher_dir: Path, **kw) -> RunConfig:
    base = dict(dataset="digits", ood="mnist5k", teacher="cnn_half", student="cnn_half", teacher_epochs=2,
                teacher_dir=str(teacher_dir), data_root=DATA, steps=6, kd_steps=2, batch_size=32, z_dim=16, ngf=8,
                ndf=8, patch_size=4, eval_every=2, ckpt_every=2, out_dir=str(tmp_path / "run"), device="cpu")
    return RunConfig(**{**base, **kw})


def tree(folder: Path) -> dict[str, float]:
    """Every path under ``folder`` with its mtime: equal before and after means nothing was created or changed."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


# ----------------------------------------------------------------------------- 1. only finite checkpoints

@pytest.mark.slow
@pytest.mark.parametrize("poison", ["optimizer", "weights"])
def test_a_checkpoint_is_written_only_when_every_weight_and_optimiser_state_is_finite(tmp_path, teachers, monkeypatch,
                                                                                      poison):
    real = game.STEPS["mosaickd"]
    calls = {"n": 0}

    def poisoned(players, streams, cfg, device, diagnose=False):  # losses stay finite; the state goes bad after step 3
        calls["n"] += 1
        out = real(players, streams, cfg, device, diagnose)
        if calls["n"] == 3:
            if poison == "optimizer":
                next(iter(players.opt_g.state.values()))["exp_avg"].fill_(math.nan)
            else:
                next(players.student.parameters()).data.fill_(math.inf)
        return out

    monkeypatch.setitem(game.STEPS, "mosaickd", poisoned)
    cfg = tiny(tmp_path, teachers["cnn_half"].parent, ckpt_every=1)
    with pytest.raises(NonFiniteLossError, match=r"step 3.*last good checkpoint: .*\(step 2\)"):
        train(cfg, progress=False)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["step"] == 2
    assert not checkpoint.nonfinite({"models": state["models"], "optimizers": state["optimizers"],
                                     "best": state["best"]["student"]})
    assert not (tmp_path / "run" / "metrics.json").exists()


# ----------------------------------------------------------------------------- 2. booleans

@pytest.mark.parametrize("flag", ["--resume", "--student_ood", "--compile", "--download"])
def test_a_misspelt_boolean_flag_is_an_error(flag, capsys):
    with pytest.raises(SystemExit) as e:
        main([flag, "ture", "--steps", "1"])
    assert e.value.code == 2
    assert flag in capsys.readouterr().err


def test_boolean_spellings_that_are_accepted():
    from mosaic.train import _boolean

    assert [_boolean(s) for s in ("true", "TRUE", "yes", "1", "on")] == [True] * 5
    assert [_boolean(s) for s in ("false", "No", "0", "off")] == [False] * 4


# ----------------------------------------------------------------------------- 3. a teacher of the run's task

@pytest.mark.slow
def test_a_teacher_file_of_another_task_is_refused_naming_the_field(tmp_path, teachers):
    other_arch = tiny(tmp_path, tmp_path / "t", teacher_ckpt=str(teachers["lenet5"]))
    with pytest.raises(ValueError, match=r"arch is 'lenet5' in the file but 'cnn_half'"):
        train(other_arch, progress=False)
    other_data = tiny(tmp_path, tmp_path / "t", dataset="fmnist", teacher_ckpt=str(teachers["cnn_half"]))
    with pytest.raises(ValueError, match=r"dataset is 'digits' in the file but 'fmnist'.*size is 8 .* 28"):
        train(other_data, progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_run_checkpoint_passed_as_teacher_says_what_it_is(tmp_path, teachers):
    run = train(tiny(tmp_path / "a", teachers["cnn_half"].parent, method="kd_ood", steps=2), progress=False)
    cfg = tiny(tmp_path / "b", tmp_path / "t", teacher_ckpt=str(run.out_dir / "checkpoint.pt"))
    with pytest.raises(ValueError, match="is a run's checkpoint .*not a teacher file"):
        train(cfg, progress=False)


@pytest.mark.slow
def test_a_teacher_module_of_another_dataset_is_refused(tmp_path, teachers):
    from mosaic.teacher import load_teacher

    teacher, _ = load_teacher(teachers["cnn_half"])
    with pytest.raises(ValueError, match="teacher passed to train"):
        train(tiny(tmp_path, tmp_path / "t", dataset="fmnist"), teacher=teacher, progress=False)


# ----------------------------------------------------------------------------- 4. one writer per run folder

def test_a_second_writer_on_a_locked_run_folder_gets_a_clear_error(tmp_path, teachers):
    cfg = tiny(tmp_path, teachers["cnn_half"].parent, steps=1)
    (tmp_path / "run").mkdir()
    with checkpoint.folder_lock(tmp_path / "run"):
        with pytest.raises(checkpoint.RunLockedError, match=rf"{tmp_path / 'run'} is being written by another .*pid {os.getpid()}"):
            train(cfg, progress=False)


def test_the_lock_dies_with_a_killed_process(tmp_path):
    script = f"from mosaic import checkpoint\nimport time\nwith checkpoint.folder_lock({str(tmp_path)!r}):\n" \
             "    print('locked', flush=True)\n    time.sleep(60)\n"
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    with pytest.raises(checkpoint.RunLockedError):
        with checkpoint.folder_lock(tmp_path):
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with checkpoint.folder_lock(tmp_path):  # no stale lock
        pass


# ----------------------------------------------------------------------------- 5 and 7. atomic files, finished last

@pytest.mark.slow
def test_samples_come_before_metrics_and_an_interrupted_finish_completes(tmp_path, teachers, monkeypatch):
    cfg = tiny(tmp_path, teachers["cnn_half"].parent, steps=2)
    real = checkpoint.write_text_atomic

    def fail_on_metrics(text, path):
        if Path(path).name == "metrics.json":
            raise KeyboardInterrupt  # the process dies here: after samples.png, before metrics.json
        real(text, path)

    monkeypatch.setattr(checkpoint, "write_text_atomic", fail_on_metrics)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    assert (tmp_path / "run" / "samples.png").exists() and not (tmp_path / "run" / "metrics.json").exists()
    monkeypatch.setattr(checkpoint, "write_text_atomic", real)
    res = train(cfg, progress=False)  # the final checkpoint is evaluated and the run declared finished
    assert (tmp_path / "run" / "metrics.json").exists() and res.metrics["steps"] == 2


@pytest.mark.slow
def test_orphaned_temp_files_of_a_killed_save_are_removed(tmp_path, teachers):
    run = tmp_path / "run"
    run.mkdir()
    for name in (".checkpoint.pt.x1y2.tmp", ".history.csv.tmp", ".samples.png.tmp.png"):
        (run / name).write_bytes(b"\0" * 1000)
    train(tiny(tmp_path, teachers["cnn_half"].parent, steps=2), progress=False)
    assert not [p.name for p in run.glob(".*tmp*")]


KILLER = """
import os, signal, sys
from pathlib import Path
from mosaic import checkpoint
from mosaic.config import RunConfig
from mosaic.train import train
mode, n = sys.argv[1], int(sys.argv[2])
cfg = RunConfig.from_dict(__import__("json").loads(sys.argv[3]))
real_save, real_text, calls = checkpoint.save_atomic, checkpoint.write_text_atomic, {"n": 0}
def save(obj, path):  # killed in the middle of the n-th checkpoint save: temp file written, not renamed
    calls["n"] += 1
    if mode == "save" and calls["n"] == n:
        import torch
        torch.save(obj, Path(path).with_name(".checkpoint.pt.killed.tmp"))
        os.kill(os.getpid(), signal.SIGKILL)
    real_save(obj, path)
def text(t, path):
    real_text(t, path)
    if mode == "metrics" and Path(path).name == "metrics.json":
        os.kill(os.getpid(), signal.SIGKILL)  # killed right after metrics.json appears
checkpoint.save_atomic, checkpoint.write_text_atomic = save, text
train(cfg, progress=False)
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["save", "metrics"])
def test_sigkill_during_a_checkpoint_save_or_after_metrics_resumes_to_the_same_numbers(tmp_path, teachers, mode):
    ref = train(tiny(tmp_path / "ref", teachers["cnn_half"].parent, steps=8), progress=False)
    cfg = tiny(tmp_path / "killed", teachers["cnn_half"].parent, steps=8)
    proc = subprocess.run([sys.executable, "-c", KILLER, mode, "3", json.dumps(cfg.to_dict())], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    run = Path(cfg.out_dir)
    if mode == "save":
        assert (run / ".checkpoint.pt.killed.tmp").exists() and not (run / "metrics.json").exists()
        assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 4  # the 2nd save survived
    else:
        assert (run / "metrics.json").exists()
    res = train(cfg, progress=False)
    assert res.history == ref.history
    for k in ("student_acc", "teacher_acc", "agreement", "per_class_acc", "student_acc_valsel"):
        assert res.metrics[k] == ref.metrics[k], k
    assert not list(run.glob(".*tmp*"))


# ----------------------------------------------------------------------------- 6. 16-bit photos

def test_16_bit_greys_are_scaled_by_their_bit_depth_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)  # (H, W), mean 32767.5
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    assert Image.open(tmp_path / "ramp16.png").mode.startswith("I")
    data = load_folder(tmp_path, image_size=64, crops_per_image=1)
    full = load_folder(tmp_path, image_size=16, crops_per_image=8)
    assert (data.images == 255).float().mean() < 0.05  # PIL's own conversion makes ~98% of them 255
    assert abs(full.images.float().mean().item() / 255 - 0.5) < 0.2


# ----------------------------------------------------------------------------- 8 and the rest: a table of bad inputs

def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def bad_inputs(tmp: Path, teachers: dict[str, Path], run_ckpt: Path) -> list[tuple[list[str], str]]:
    """(command-line flags, a text the error must contain): at least 25 kinds of bad input."""
    afile = _write(tmp / "a_file", b"x")
    return [
        (["--method", "mosaic"], "method"),
        (["--discriminator", "pixel"], "discriminator"),
        (["--precision", "fp8"], "precision"),
        (["--steps", "abc"], "--steps"),
        (["--steps", "0"], "steps"),
        (["--batch_size", "1.5"], "--batch_size"),
        (["--batch_size", "0"], "batch_size"),
        (["--eval_every", "-1"], "eval_every"),
        (["--lr_s", "inf"], "lr_s"),
        (["--lr_g", "nan"], "lr_g"),
        (["--t_kd", "inf"], "t_kd"),
        (["--momentum_s", "nan"], "momentum_s"),
        (["--w_local", "nan"], "w_local"),
        (["--w_adv", "-1"], "w_adv"),
        (["--betas", "0.5", "1.5"], "betas"),
        (["--resume", "ture"], "--resume"),
        (["--student_ood", "maybe"], "--student_ood"),
        (["--dataset", "cifar11"], "cifar11"),
        (["--dataset", f"folder:{tmp}"], "dataset"),
        (["--ood", "nosuchset"], "nosuchset"),
        (["--teacher", "resnet99"], "resnet99"),
        (["--student", "lenet"], "student"),
        (["--patch_size", "100"], "patch_size"),
        (["--device", "tpu"], "device"),
        (["--method", "scratch", "--ood_subset", "5"], "ood_subset"),
        (["--teacher_ckpt", str(tmp / "missing.pt")], "missing.pt"),
        (["--teacher_ckpt", _write(tmp / "garbage.pt", os.urandom(2000))], "garbage.pt is unreadable"),
        (["--teacher_ckpt", _write(tmp / "empty.pt", b"")], "empty.pt is unreadable"),
        (["--teacher_ckpt", str(run_ckpt)], "run's checkpoint"),
        (["--teacher_ckpt", str(teachers["lenet5"])], "arch is 'lenet5'"),
        (["--out_dir", afile], "not a folder"),
        (["--out_dir", f"{afile}/run"], "cannot be created"),
        (["-f", str(tmp / "missing.yaml")], "missing.yaml"),
        (["-f", _write(tmp / "list.yaml", b"- 1\n- 2\n")], "mapping"),
        (["-f", _write(tmp / "typo.yaml", b"stepz: 3\n")], "stepz"),
    ]


@pytest.mark.slow
def test_a_table_of_bad_inputs_on_the_command_line_fails_before_anything_is_created(tmp_path, teachers, capsys):
    run = train(tiny(tmp_path / "ok", teachers["cnn_half"].parent, method="kd_ood", steps=1), progress=False)
    work = tmp_path / "work"
    work.mkdir()
    cases = bad_inputs(tmp_path, teachers, run.out_dir / "checkpoint.pt")
    assert len(cases) >= 25
    base = ["--dataset", "digits", "--teacher", "cnn_half", "--student", "cnn_half", "--patch_size", "4",
            "--steps", "1", "--data_root", DATA, "--teacher_dir", str(work / "teachers"),
            "--out_dir", str(work / "run"), "--device", "cpu"]
    before = tree(tmp_path)
    for flags, expected in cases:
        with pytest.raises(SystemExit) as e:
            main(base + flags)  # later flags win
        err = capsys.readouterr().err
        assert e.value.code == 2, (flags, err)
        assert expected in err, (flags, err)
        assert "Traceback" not in err
        assert tree(tmp_path) == before, (flags, "created or changed files")


@pytest.mark.slow
def test_a_corrupt_checkpoint_names_the_file_and_what_to_do(tmp_path, teachers):
    cfg = tiny(tmp_path, teachers["cnn_half"].parent, steps=4)
    train(cfg.replace(steps=2, resume=False), progress=False)  # a different run's folder: resume reads its checkpoint
    path = tmp_path / "run" / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:500])  # truncated
    with pytest.raises(checkpoint.UnreadableFileError, match=rf"{path} is unreadable.*resume=False"):
        train(cfg, progress=False)


def test_a_full_disk_while_saving_says_so_and_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save_atomic({"step": 1}, path)

    def full(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match=r"could not write .*checkpoint.pt .*previous file is intact.*disk full"):
        checkpoint.save_atomic({"step": 2}, path)
    monkeypatch.undo()
    assert checkpoint.load(path)["step"] == 1 and not list(tmp_path.glob(".*tmp"))


# ----------------------------------------------------------------------------- the same through notebook 02

def papermill(params: dict, out: Path) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / "02_train.ipynb"), str(out), "--cwd",
            str(ROOT), "-k", "python3", "--no-progress-bar"]
    for k, v in params.items():
        args += ["-p", k, str(v)]
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("param,value,expected", [
    ("steps", "abc", "RunConfig.steps must be a whole number"),
    ("batch_size", 1.5, "RunConfig.batch_size must be a whole number"),
    ("resume", "ture", "RunConfig.resume must be True or False"),
    ("dataset", "cifar11", "unknown dataset 'cifar11'"),
    ("patch_size", 100, "patch_size=100 is larger"),
    ("lr_s", "inf", "RunConfig.lr_s must be a finite number"),
])
def test_bad_inputs_through_notebook_02_fail_in_the_config_cell_before_anything_is_created(tmp_path, param, value,
                                                                                             expected):
    work = tmp_path / "work"
    work.mkdir()
    params = {"dataset": "digits", "teacher": "cnn_half", "student": "cnn_half", "patch_size": 4, "steps": 1,
              "out_dir": work / "run", "teacher_dir": work / "teachers", param: value}
    proc = papermill(params, tmp_path / "out.ipynb")
    assert proc.returncode != 0
    text = proc.stderr + (tmp_path / "out.ipynb").read_text()
    assert expected in text, textwrap.shorten(text[-3000:], 3000)
    assert list(work.iterdir()) == []


@pytest.mark.slow
def test_starting_over_in_a_finished_folder_undeclares_it_first(tmp_path, teachers, monkeypatch):
    import mosaic.train as T
    from mosaic.train import finished

    cfg = tiny(tmp_path, teachers["cnn_half"].parent, method="kd_ood", steps=4)
    train(cfg, progress=False)
    assert finished(cfg.out_dir, cfg)
    real = T.iterate
    monkeypatch.setattr(T, "iterate", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt) if a[-1] == 3 else real(*a))
    with pytest.raises(KeyboardInterrupt):
        train(cfg.replace(resume=False), progress=False)  # killed half-way through the new run
    assert not finished(cfg.out_dir, cfg)  # its step-2 checkpoint is not passed off as the finished run


def test_r1_under_torchrun_is_refused_before_anything_is_built(tmp_path, monkeypatch):
    from mosaic import build, distributed
    cfg = RunConfig(d_r1=1.0, out_dir=str(tmp_path / "run"))
    build.preflight(cfg)  # one process: fine
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    with pytest.raises(ValueError, match="d_r1=1.0 differentiates D's gradient.*set d_r1=0 under torchrun"):
        build.preflight(cfg)
    build.preflight(cfg.replace(d_r1=0.0))  # the rest of the run is fine under two processes
    from mosaic.data import dataset_spec
    from mosaic.models import get_classifier
    teacher = get_classifier("lenet5", dataset_spec("fmnist"))
    with pytest.raises(ValueError, match="d_r1=1.0 differentiates D's gradient"):  # a caller that skips preflight
        build.build_players(cfg, teacher, "cpu", parallel=True)
