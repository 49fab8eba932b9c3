"""One run on several processes (mosaic.distributed): the batch split rule, global-batch statistics, and
2-process gloo runs under torchrun checked against the same run on one process.

Tolerance of the equivalence: the two runs draw the same global batches and latent codes and use
global-batch BatchNorm and class marginals, so they compute the same sums in another order (per-rank
partial sums, then the all-reduce): float32 rounding, measured at <= 3e-6 on every history value over
12 steps. We allow 1e-4 absolute (30x that), far below what a real difference moves (per-rank BatchNorm,
sync_bn=False, measured on this run: loss_s off by up to 7e-3, loss_g by up to 0.8).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from mosaic import distributed
from mosaic.build import build_teacher, preflight
from mosaic.config import RunConfig
from mosaic.train import train

TOLERANCE = 1e-4  # absolute, on every history value (see the module docstring)
WORKER = Path(__file__).with_name("ddp_worker.py")


# ----------------------------------------------------------------------------- one process: the rules

def test_the_global_batch_splits_evenly_or_is_refused_saying_what_to_choose():
    assert distributed.local_batch(128, 4) == 32 and distributed.local_batch(16, 1) == 16
    with pytest.raises(ValueError, match=r"batch_size=130 is the global batch.*multiple of 4 \(e.g. 128 or 132\)"):
        distributed.local_batch(130, 4)


def test_shards_partition_the_global_batch_in_rank_order():
    x = torch.arange(24.0).view(12, 2)
    parts = [distributed.Shard(r, 4).take(x) for r in range(4)]
    assert all(len(p) == 3 for p in parts) and torch.equal(torch.cat(parts), x)
    assert distributed.Shard().take(x) is x  # one process: the batch itself
    with pytest.raises(ValueError, match="multiple of 5"):
        distributed.Shard(0, 5).take(x)


def test_one_process_is_left_untouched():
    x = torch.randn(6, 3)
    assert torch.equal(distributed.Shard().mean(x), x.mean(dim=0))
    m = nn.Linear(2, 2)
    assert distributed.wrap(m, "cpu") is m and distributed.unwrap(m) is m and distributed.without_ddp(m) is m
    row = {"loss_s": 1.5}
    assert distributed.average(row) is row
    assert distributed.describe(16) == {"world_size": 1, "batch_per_rank": 16}


def test_global_batchnorm_is_batchnorm_on_one_process_and_shares_its_tensors():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    ref = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    ref.load_state_dict(net.state_dict())
    weight, keys = net[1].weight, list(net.state_dict())
    converted = distributed.global_batchnorm(net)
    assert isinstance(converted[1], distributed.GlobalBatchNorm) and converted[1].weight is weight  # optimisers stay valid
    assert list(converted.state_dict()) == keys  # checkpoints move between world sizes
    x = torch.randn(5, 1, 6, 6)
    assert torch.equal(converted(x), ref(x))
    assert torch.equal(converted[1].running_var, ref[1].running_var)


def test_a_changed_world_size_is_refused_only_when_batchnorm_is_per_rank(tmp_path):
    distributed.check_resume(2, sync_bn=True, path=tmp_path / "checkpoint.pt")  # global statistics: resumable
    distributed.check_resume(1, sync_bn=False, path=tmp_path / "checkpoint.pt")  # same world size
    with pytest.raises(ValueError, match=r"2 process\(es\) with sync_bn=False.*--nproc_per_node 2.*resume=False"):
        distributed.check_resume(2, sync_bn=False, path=tmp_path / "checkpoint.pt")


def test_one_gpu_index_for_every_process_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="device='cuda:1' would put every process on one GPU.*'auto'"):
        distributed.setup("cuda:1")


def test_preflight_refuses_a_global_batch_that_does_not_split(tmp_path, monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(ValueError, match="batch_size=16 is the global batch.*3 processes"):
        preflight(RunConfig(batch_size=16, out_dir=str(tmp_path / "run")))


def test_every_runconfig_flag_passes_through_torchrun_untouched():
    """torchrun's parser takes an option's prefix as the option (``--log`` is ambiguous there): no RunConfig
    flag may be the prefix of a torchrun option, or ``torchrun ... -m mosaic.train --FLAG`` fails."""
    import dataclasses

    from torch.distributed.run import get_args_parser

    options = [o for action in get_args_parser()._actions for o in action.option_strings]
    clashes = {f.name: [o for o in options if o.startswith(f"--{f.name}")] for f in dataclasses.fields(RunConfig)}
    assert not {k: v for k, v in clashes.items() if v}


# ----------------------------------------------------------------------------- two gloo processes

def tiny(root: Path, teacher_dir: str, **kw) -> RunConfig:
    base = dict(dataset="digits", ood="mnist5k", teacher="cnn_half", student="cnn_half", teacher_epochs=2,
                teacher_dir=teacher_dir, steps=12, kd_steps=2, batch_size=16, z_dim=16, ngf=8, ndf=8, patch_size=4,
                eval_every=3, ckpt_every=3, out_dir=str(root / "run"), device="cpu")
    return RunConfig(**{**base, **kw})


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]


def cli_args(cfg: RunConfig) -> list[str]:
    args = ["-m", "mosaic.train"]
    for k, v in cfg.to_dict().items():
        args += [f"--{k}", *map(str, v)] if isinstance(v, list) else [f"--{k}", str(v)]
    return args


def env() -> dict[str, str]:
    """The parent's environment with the repo root prepended to PYTHONPATH (not replacing it) and warnings off."""
    path = os.pathsep.join(filter(None, [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONWARNINGS": "ignore"}


def close(a: list[dict], b: list[dict]) -> float:
    """The largest absolute difference between two histories with the same rows and columns."""
    assert [sorted(r) for r in a] == [sorted(r) for r in b]
    return max(abs(r[k] - s[k]) for r, s in zip(a, b) for k in r)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same tiny MosaicKD run (cnn_half student and generator and discriminator all with BatchNorm) on one
    process and on two gloo processes under torchrun; the latter records, per rank, what it wrote."""
    root = tmp_path_factory.mktemp("ddp")
    teacher_dir = str(root / "teachers")
    build_teacher(tiny(root, teacher_dir), "cpu", progress=False)  # cached: both launches read it
    single = train(tiny(root / "single", teacher_dir), progress=False)
    cfg = tiny(root / "ddp", teacher_dir)
    (root / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    r = subprocess.run(torchrun(str(WORKER), str(root / "cfg.json"), str(root / "record")), env=env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    ranks = [json.loads((root / "record" / f"rank{i}.json").read_text()) for i in range(2)]
    return {"root": root, "teacher_dir": teacher_dir, "single": single, "ranks": ranks, "cfg": cfg}


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(runs):
    rank0, rank1 = runs["ranks"]
    assert rank0["world_size"] == 2 and rank0["student_wrapped"]
    assert close(runs["single"].history, rank0["history"]) < TOLERANCE
    assert rank1["history"] == rank0["history"] and rank1["metrics"] == rank0["metrics"]  # every rank returns rank 0's
    m, ref = rank0["metrics"], runs["single"].metrics
    assert m["world_size"] == 2 and m["batch_per_rank"] == 8 and ref["world_size"] == 1 and ref["batch_per_rank"] == 16
    for k in ("student_acc", "agreement", "student_acc_valsel"):
        assert abs(m[k] - ref[k]) < 1e-6, k
    saved = json.loads((Path(runs["cfg"].out_dir) / "metrics.json").read_text())
    assert saved["world_size"] == 2 and saved["batch_per_rank"] == 8


@pytest.mark.slow
def test_only_rank_0_writes_and_the_teacher_is_never_wrapped_or_changed(runs):
    rank0, rank1 = runs["ranks"]
    assert rank1["writes"] == []
    assert {"folder_lock:run", "save_atomic:checkpoint.pt", "write_text_atomic:history.csv",
            "write_text_atomic:metrics.json", "save_image:.samples.png.tmp.png"} <= set(rank0["writes"])
    for r in (rank0, rank1):
        assert r["teacher_unchanged"] and r["teacher_frozen"] and not r["teacher_wrapped"]


@pytest.mark.slow
def test_a_killed_distributed_run_resumes_to_the_same_numbers(runs, tmp_path):
    """SIGKILL to the whole torchrun launch after its first checkpoint; resumed on 2 processes it gives the
    uninterrupted 2-process run's numbers exactly; resumed on 1 process (a changed world size) the same
    numbers within the tolerance."""
    cfg = tiny(tmp_path / "killed", runs["teacher_dir"])
    proc = subprocess.Popen(torchrun(*cli_args(cfg)), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # its own process group: the launcher and both workers
    ckpt = Path(cfg.out_dir) / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, f"the launch ended before it was killed: {proc.stderr.read().decode()[-3000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), proc.stderr.read().decode()[-2000:]
    killed_at = torch.load(ckpt, weights_only=False)["step"]
    assert killed_at < cfg.steps, "the run finished before it was killed; make it longer"
    assert torch.load(ckpt, weights_only=False)["world_size"] == 2
    shutil.copytree(Path(cfg.out_dir), tmp_path / "one" / "run")
    r = subprocess.run(torchrun(*cli_args(cfg)), env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    resumed = json.loads(Path(cfg.out_dir, "metrics.json").read_text())
    ref = json.loads(Path(runs["cfg"].out_dir, "metrics.json").read_text())
    history = torch.load(ckpt, weights_only=False)["history"]
    assert history == runs["ranks"][0]["history"]
    for k in ("student_acc", "agreement", "per_class_acc", "student_acc_valsel", "valsel_step"):
        assert resumed[k] == ref[k], k
    one = train(cfg.replace(out_dir=str(tmp_path / "one" / "run")), progress=False)  # 2 processes -> 1
    assert close(one.history, history) < TOLERANCE and one.metrics["world_size"] == 1
