"""The training loop end to end on tiny offline data (sklearn digits in-domain, MNIST-5k as OOD)."""
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from mosaic import game
from mosaic.config import RunConfig
from mosaic.build import build_teacher
from mosaic.train import NonFiniteLossError, load_run, train

from killing import cli_args, interrupted_and_resumed, kill_midway

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("teachers"))


def tiny(tmp_path, teacher_dir, **kw) -> RunConfig:
    base = dict(dataset="digits", ood="mnist5k", teacher="cnn_half", student="cnn_half", teacher_epochs=15,
                teacher_dir=teacher_dir, steps=6, kd_steps=2, batch_size=32, z_dim=16, ngf=8, ndf=8,
                patch_size=4, eval_every=2, ckpt_every=2, out_dir=str(tmp_path / "run"), device="cpu")
    base.update(kw)
    return RunConfig(**base)


@pytest.mark.parametrize("method", ["mosaickd", "kd_ood", "datafree", "kd_indomain", "scratch"])
def test_every_method_writes_a_complete_run_folder(tmp_path, teacher_dir, method):
    res = train(tiny(tmp_path, teacher_dir, method=method), progress=False)
    m = json.loads((res.out_dir / "metrics.json").read_text())
    for key in ("method", "dataset", "ood", "steps", "student_acc", "teacher_acc", "agreement", "wall_s",
                "per_class_acc", "student_acc_valsel", "config"):
        assert key in m, key
    assert m["method"] == method and m["steps"] == 6
    assert 0 <= m["student_acc"] <= 100 and m["teacher_acc"] > 50  # a 2-epoch digits teacher is far above chance
    assert len(m["per_class_acc"]) == 10
    assert RunConfig.from_dict(m["config"]).method == method
    lines = (res.out_dir / "history.csv").read_text().splitlines()
    assert len(lines) == 1 + 6 and "loss_s" in lines[0] and "val_acc" in lines[0]
    assert (res.out_dir / "samples.png").exists() == (method in ("mosaickd", "datafree"))
    # the mosaic distance of the generator's samples and of in-domain images, against one bank of OOD patches
    has = {"patch_rmse", "patch_rmse_indomain"} <= set(m)
    assert has == (method in ("mosaickd", "datafree"))
    if has:
        assert 0 < m["patch_rmse"] < 1 and 0 < m["patch_rmse_indomain"] < 1


def test_teacher_parameters_bit_identical_after_training(tmp_path, teacher_dir):
    cfg = tiny(tmp_path, teacher_dir)
    teacher, _ = build_teacher(cfg, "cpu", progress=False)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    res = train(cfg, teacher=teacher, progress=False)
    assert res.players.teacher is teacher
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path, teacher_dir):
    a = train(tiny(tmp_path / "a", teacher_dir, seed=1), progress=False)
    b = train(tiny(tmp_path / "b", teacher_dir, seed=1), progress=False)
    c = train(tiny(tmp_path / "c", teacher_dir, seed=2), progress=False)
    assert a.history == b.history and a.metrics["student_acc"] == b.metrics["student_acc"]
    assert a.history != c.history


@pytest.mark.parametrize("delay", [0.0, 0.3])
def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path, teacher_dir, delay):
    steps = 30
    ref = train(tiny(tmp_path / "ref", teacher_dir, steps=steps, ckpt_every=3), progress=False)
    cfg = tiny(tmp_path / "killed", teacher_dir, steps=steps, ckpt_every=3)
    kill_midway([sys.executable, "-m", "mosaic.train", *cli_args(cfg)], tmp_path / "killed" / "run" / "checkpoint.pt",
                delay, steps)
    res = train(cfg, progress=False)
    assert res.history == ref.history
    for k in ("student_acc", "teacher_acc", "agreement", "per_class_acc", "student_acc_valsel", "valsel_step"):
        assert res.metrics[k] == ref.metrics[k], k


def test_resume_with_other_parameters_is_refused(tmp_path, teacher_dir):
    train(tiny(tmp_path, teacher_dir, steps=2), progress=False)
    with pytest.raises(ValueError, match="other parameters"):
        train(tiny(tmp_path, teacher_dir, steps=2, lr_s=0.5), progress=False)


def test_nan_guard_names_the_loss_and_keeps_last_good_checkpoint(tmp_path, teacher_dir, monkeypatch):
    real = game.STEPS["kd_ood"]
    calls = {"n": 0}

    def flaky(players, streams, cfg, device, diagnose=False):
        calls["n"] += 1
        out = real(players, streams, cfg, device, diagnose)
        return {**out, "loss_s": math.nan} if calls["n"] == 5 else out

    monkeypatch.setitem(game.STEPS, "kd_ood", flaky)
    cfg = tiny(tmp_path, teacher_dir, method="kd_ood")
    with pytest.raises(NonFiniteLossError, match=r"loss_s became nan at step 5.*step 4"):
        train(cfg, progress=False)
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["step"] == 4
    assert len((tmp_path / "run" / "history.csv").read_text().splitlines()) == 1 + 5


def test_ood_subset_keeps_n_images(tmp_path, teacher_dir):
    res = train(tiny(tmp_path, teacher_dir, method="kd_ood", ood_subset=500, steps=2), progress=False)
    assert res.metrics["n_ood"] == 500 and len(res.ood) == 500


def test_cli_reads_a_parameter_file_and_flags_override(tmp_path, teacher_dir):
    import yaml
    from mosaic.train import main
    cfg = tiny(tmp_path, teacher_dir, method="kd_ood", steps=2)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({**cfg.to_dict(), "steps": 50}))
    m = main(["-f", str(tmp_path / "p.yaml"), "--steps", "3"])
    assert m["steps"] == 3 and m["config"]["batch_size"] == 32


def test_a_finished_run_is_loaded_not_evaluated_or_rewritten_again(tmp_path, teacher_dir):
    cfg = tiny(tmp_path, teacher_dir)
    first = train(cfg, progress=False)
    files = {name: (first.out_dir / name).read_bytes() for name in ("metrics.json", "samples.png", "history.csv")}
    stamps = {name: (first.out_dir / name).stat().st_mtime_ns for name in files}
    again = train(cfg.replace(device="cpu", eval_every=3), progress=False)  # resumable changes only
    assert again.metrics == first.metrics and len(again.history) == cfg.steps
    assert all((first.out_dir / n).read_bytes() == b and (first.out_dir / n).stat().st_mtime_ns == stamps[n]
               for n, b in files.items())
    for (k, a), b in zip(first.players.student.state_dict().items(), again.players.student.state_dict().values()):
        assert torch.equal(a, b), k  # the trained student, restored from the checkpoint
    (first.out_dir / "metrics.json").unlink()  # checkpoint without metrics: evaluated and written again
    third = train(cfg, progress=False)
    assert third.metrics["student_acc"] == first.metrics["student_acc"]
    assert (first.out_dir / "metrics.json").exists()


def test_load_run_reads_any_finished_run_with_its_own_config(tmp_path, teacher_dir):
    cfg = tiny(tmp_path, teacher_dir, steps=4, w_balance=3.0, seed=5)  # nothing like the defaults
    first = train(cfg, progress=False)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    loaded = load_run(cfg.out_dir, device="cpu")
    assert torch.equal(torch.rand(3), expected)  # the global RNG is left as it was
    assert loaded.config.same_results(cfg) and loaded.config.w_balance == 3.0 and loaded.config.steps == 4
    assert loaded.metrics == first.metrics and loaded.history == first.history
    assert len(loaded.ood) == len(first.ood)
    for name in ("student", "generator", "discriminator"):
        a, b = getattr(first.players, name).state_dict(), getattr(loaded.players, name).state_dict()
        assert all(torch.equal(v, b[k]) for k, v in a.items()), name
    assert loaded.players.teacher.frozen and not loaded.players.teacher.training


def test_load_run_never_trains_and_says_what_to_do(tmp_path):
    missing = tmp_path / "nothing_here"
    with pytest.raises(FileNotFoundError, match="no finished run.*train"):
        load_run(missing)
    assert not missing.exists()


def test_teacher_provenance_is_recorded_however_the_teacher_arrives(tmp_path, teacher_dir):
    cfg = tiny(tmp_path, teacher_dir, method="kd_ood", steps=2)
    built = train(cfg, progress=False).metrics["teacher_info"]
    teacher, _ = build_teacher(cfg, "cpu", progress=False)
    passed = train(cfg.replace(out_dir=str(tmp_path / "passed")), teacher=teacher, progress=False).metrics["teacher_info"]
    for info in (built, passed):
        assert info["path"].endswith(".pt") and info["config"]["dataset"] == "digits" and info["config"]["epochs"] == 15
        assert 0 < info["test_acc"] <= 100 and 0 < info["val_acc"] <= 100
    assert built["path"] == passed["path"]


def test_a_patch_gan_warmup_comes_first_and_resumes_exactly(tmp_path, teacher_dir, monkeypatch):
    cfg = tiny(tmp_path / "full", teacher_dir, warmup_gan=3, steps=4, eval_every=2, ckpt_every=2, warmup_s=0.5)
    full = train(cfg, progress=False)
    rows = full.history
    assert [r["step"] for r in rows] == list(range(1, 8))
    assert all("loss_local" in r and "loss_s" not in r and "val_acc" not in r for r in rows[:3])
    assert all("loss_s" in r for r in rows[3:]) and [r["step"] for r in rows if "val_acc" in r] == [5, 7]
    assert len({r["lr_s"] for r in rows[:4]}) == 1  # no schedule moves during the warm-up
    assert rows[4]["lr_s"] > rows[3]["lr_s"]  # then the student's lr warms up (0.5 of 4 steps)
    assert full.metrics["steps"] == 4 and full.metrics["valsel_step"] in (5, 7)
    # killed at step 5 (after the step-4 checkpoint, inside the game), resumed: the same numbers
    again = interrupted_and_resumed(cfg.replace(out_dir=str(tmp_path / "broken" / "run")), 5, monkeypatch)
    assert again.history == full.history and again.metrics["student_acc"] == full.metrics["student_acc"]


def test_a_run_without_the_mosaic_distance_gets_it_back_from_its_checkpoint(tmp_path, teacher_dir):
    """quality.run_one fills patch_rmse into a finished run's metrics.json written before the metric existed,
    with the number train() wrote (same fixed-noise samples, same bank, CPU)."""
    from mosaic.bench import quality

    cfg = tiny(tmp_path, teacher_dir, method="datafree")
    written = train(cfg, progress=False).metrics
    path = Path(cfg.out_dir) / "metrics.json"
    old = {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("patch_rmse")}
    path.write_text(json.dumps(old))
    filled = quality.run_one(cfg)
    assert filled["patch_rmse"] == pytest.approx(written["patch_rmse"], abs=1e-6)
    assert filled["patch_rmse_indomain"] == pytest.approx(written["patch_rmse_indomain"], abs=1e-6)
    assert json.loads(path.read_text())["patch_rmse"] == filled["patch_rmse"]  # written back once
    assert "patch_rmse" not in quality.run_one(tiny(tmp_path / "s", teacher_dir, method="scratch"))
    # a datafree run serves every pair with its in-domain side: measured against another pair's OOD bank
    from mosaic.train import measure_patches

    other = measure_patches(cfg.out_dir, ood="digits")
    assert other["patch_rmse"] != pytest.approx(written["patch_rmse"], abs=1e-3)
    assert 0 < other["patch_rmse"] < 1 and 0 < other["patch_rmse_indomain"] < 1
    assert measure_patches(cfg.out_dir, ood=cfg.ood) == pytest.approx({k: written[k] for k in other}, abs=1e-6)


def test_a_run_with_a_pool_checkpoints_it_and_resumes_exactly(tmp_path, teacher_dir, monkeypatch):
    """RunConfig.pool: the replay memory is part of the checkpoint, so a broken run resumes to the same numbers;
    and a pool changes the run (the student sees other images than the fresh batches)."""
    cfg = tiny(tmp_path / "full", teacher_dir, pool=40, steps=4)
    full = train(cfg, progress=False)
    ckpt = torch.load(Path(cfg.out_dir) / "checkpoint.pt", weights_only=False)
    assert ckpt["pool"]["size"] == 40 and ckpt["pool"]["images"].shape[0] == 40  # 4 x 2 x 32 pushed, the last 40 kept
    again = interrupted_and_resumed(cfg.replace(out_dir=str(tmp_path / "broken" / "run")), 3, monkeypatch)
    assert again.history == full.history and again.metrics["student_acc"] == full.metrics["student_acc"]
    without = train(cfg.replace(pool=0, out_dir=str(tmp_path / "nopool" / "run")), progress=False)
    assert [r["loss_s"] for r in without.history] != [r["loss_s"] for r in full.history]


def test_a_spectral_norm_discriminator_resumes_exactly(tmp_path, teacher_dir, monkeypatch):
    """d_norm='spectral': D's power-iteration vectors are buffers of its state dict, so a broken run resumes to the
    same numbers; and it is another discriminator than the BatchNorm one (other D outputs from the first step)."""
    cfg = tiny(tmp_path / "full", teacher_dir, d_norm="spectral", steps=4)
    full = train(cfg, progress=False)
    ckpt = torch.load(Path(cfg.out_dir) / "checkpoint.pt", weights_only=False)
    d_state = ckpt["models"]["discriminator"]
    assert any(k.endswith("._u") for k in d_state) and not any("running_mean" in k for k in d_state)
    again = interrupted_and_resumed(cfg.replace(out_dir=str(tmp_path / "broken" / "run")), 3, monkeypatch)
    assert again.history == full.history and again.metrics["student_acc"] == full.metrics["student_acc"]
    batch = train(cfg.replace(d_norm="batch", out_dir=str(tmp_path / "bn" / "run")), progress=False)
    assert batch.history[0]["d_real"] != full.history[0]["d_real"]


def test_an_augmented_discriminator_resumes_exactly(tmp_path, teacher_dir, monkeypatch):
    """d_augment draws from torch's global RNG, which the checkpoint holds: a broken run resumes to the same numbers;
    and the augmentation changes the run (D's first scores differ from an unaugmented D's)."""
    cfg = tiny(tmp_path / "full", teacher_dir, d_augment="translation+cutout", steps=4)
    full = train(cfg, progress=False)
    again = interrupted_and_resumed(cfg.replace(out_dir=str(tmp_path / "broken" / "run")), 3, monkeypatch)
    assert again.history == full.history and again.metrics["student_acc"] == full.metrics["student_acc"]
    plain = train(cfg.replace(d_augment="none", out_dir=str(tmp_path / "plain" / "run")), progress=False)
    assert plain.history[0]["d_real"] != full.history[0]["d_real"]
