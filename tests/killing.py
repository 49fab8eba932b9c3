"""Shared by the resume tests: break a training run mid-way (SIGKILL of a child process, or an exception inside
one iteration) and resume it."""
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from mosaic.config import RunConfig
from mosaic.train import RunResult, train


def cli_args(cfg: RunConfig) -> list[str]:
    """``--field value`` for every field of cfg, as ``python -m mosaic.train`` reads them."""
    args = []
    for k, v in cfg.to_dict().items():
        args += [f"--{k}", *map(str, v)] if isinstance(v, list) else [f"--{k}", str(v)]
    return args


def kill_midway(argv: list[str], ckpt: Path, delay: float, steps: int) -> int:
    """Run argv, SIGKILL it ``delay`` s after its first checkpoint appears (between, or while writing,
    checkpoints); returns the step of the checkpoint left behind, asserting the run had not finished."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), proc.stderr.read().decode()[-2000:]
    killed_at = torch.load(ckpt, weights_only=False)["step"]
    assert killed_at < steps, "the run finished before it was killed; make it longer"
    return killed_at


def interrupted_and_resumed(cfg: RunConfig, at_step: int, monkeypatch) -> RunResult:
    """cfg trained until a KeyboardInterrupt inside iteration ``at_step`` (``mosaic.train.iterate``), then trained
    again from its last checkpoint: the resumed run's result."""
    import mosaic.train as T

    real = T.iterate

    def dies(*args):
        if args[-1] == at_step:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(T, "iterate", dies)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    monkeypatch.setattr(T, "iterate", real)
    return train(cfg, progress=False)
