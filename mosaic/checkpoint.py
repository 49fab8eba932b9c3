"""Atomic checkpoints, run-folder locks, and the RNG state that makes a resumed run bit-identical to an unbroken one."""
from __future__ import annotations

import contextlib
import errno
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to a temp file in the same folder, fsync, then rename over ``path``.

    A process killed at any moment leaves either the previous file or the new one, never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch's zip writer reports a full disk as a RuntimeError
        Path(tmp).unlink(missing_ok=True)
        kept = "the previous file is intact" if path.exists() else "nothing was written"
        raise OSError(errno.ENOSPC if "enforce fail" in str(err) else getattr(err, "errno", None),
                      f"could not write {path} ({type(err).__name__}: {str(err).splitlines()[0][:200]}); {kept}. "
                      "Is the disk full or the folder read-only? Free space or choose another out_dir, then "
                      "run again: the run resumes from its last checkpoint") from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Same rename trick for small text files (metrics.json, history.csv)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class UnreadableFileError(RuntimeError):
    """A checkpoint or teacher file that torch cannot read (truncated, empty, not a torch file)."""


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu",
         what_to_do: str = "move it away or delete it") -> dict[str, Any]:
    """Load a checkpoint written by ``save_atomic``; a missing or unreadable file says which and what to do."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path.resolve()}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001 - pickle, zip and torch errors all mean "unreadable"
        raise UnreadableFileError(f"{path} is unreadable (truncated, empty or not a torch file: "
                                  f"{type(err).__name__}: {str(err)[:200]}); {what_to_do}") from err
    if not isinstance(obj, dict):
        raise UnreadableFileError(f"{path} holds a {type(obj).__name__}, not a mosaic checkpoint; {what_to_do}")
    return obj


def nonfinite(tensors: Any, prefix: str = "") -> dict[str, int]:
    """{name: count} of the non-finite values in every floating tensor of a nested dict/list (a state dict,
    an optimiser state); empty when all are finite."""
    found: dict[str, int] = {}
    if isinstance(tensors, torch.Tensor):
        if tensors.is_floating_point() and not bool(torch.isfinite(tensors).all()):
            found[prefix or "tensor"] = int((~torch.isfinite(tensors)).sum())
    elif isinstance(tensors, dict):
        for k, v in tensors.items():
            found.update(nonfinite(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(tensors, (list, tuple)):
        for i, v in enumerate(tensors):
            found.update(nonfinite(v, f"{prefix}[{i}]"))
    return found


class RunLockedError(RuntimeError):
    """Another live process is writing this run folder."""


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive OS lock on ``folder/.lock`` while the block runs (POSIX flock).

    The lock belongs to the process: it is released when the block ends or the process dies (SIGKILL
    included), so it never goes stale. A second process gets RunLockedError at once.
    """
    import fcntl

    path = Path(folder) / ".lock"
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise RunLockedError(f"{Path(folder)} is being written by another running process (pid {holder}); "
                                 "wait for it to finish or choose another out_dir") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # a clean folder after a run; a killed run leaves the file, not a lock
            fcntl.flock(f, fcntl.LOCK_UN)


def remove_temp_files(folder: str | os.PathLike) -> list[str]:
    """Delete the temp files an interrupted atomic write left in ``folder`` (``.NAME.*tmp*``); returns their names.

    Call it only while holding the folder's lock: then no live writer owns them.
    """
    removed = []
    for p in Path(folder).glob(".*.tmp*"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p.name)
    return sorted(removed)


def rng_state() -> dict[str, Any]:
    """Every global RNG a run draws from: python, numpy, torch CPU and (if present) CUDA."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
        state["cuda_current"] = torch.cuda.get_rng_state()  # the device this process draws on (under torchrun,
        # rank 0's: restored on every rank's own device, whose draws are rank 0's by construction)
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
        if "cuda_current" in state:
            torch.cuda.set_rng_state(state["cuda_current"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


__all__ = ["save_atomic", "write_text_atomic", "load", "UnreadableFileError", "nonfinite", "RunLockedError",
           "folder_lock", "remove_temp_files", "rng_state", "set_rng_state", "seed_everything"]
