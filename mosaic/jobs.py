"""Runs of a grid as submitit jobs: on this machine (``local``: separate processes, N at once, one GPU each
when there are GPUs) or on a Slurm cluster (``slurm``: one job array), and the state of every job.

``mosaic.grid.run_grid(..., executor="local" | "slurm")`` uses this module; each job trains one run folder
(the library or the notebook, as in-process) and nothing else, so skip-if-done and resume stay the run
folders' business: a preempted, killed or failed job is simply submitted again, and continues from its
checkpoint. The jobs' own files (submitit's pickles and the stdout / stderr logs) live in a jobs folder,
with ``index.json`` mapping each run folder to its latest job; ``job_states`` reads them back.
"""
from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from mosaic import checkpoint

EXECUTORS = ("inprocess", "local", "slurm")
INDEX = "index.json"
SLURM_QUEUED = ("PENDING", "REQUEUED", "CONFIGURING", "RESIZING", "SUSPENDED")
SLURM_RUNNING = ("RUNNING", "COMPLETING")


def slurm_parameters(partition: str | None = None, time_min: int = 60, gpus_per_task: int = 1,
                     cpus_per_task: int = 8, array_parallelism: int = 32, mem_gb: int | None = None,
                     setup: Sequence[str] = (), **extra: Any) -> dict[str, Any]:
    """submitit's SlurmExecutor parameters for a grid: one task per job (one run), its GPUs and CPUs, the
    partition and time limit (minutes), and how many jobs of the array run at once. ``setup``: shell lines
    run before each job (``module load ...``, ``source .venv/bin/activate``); ``extra``: any other
    SlurmExecutor parameter (``account``, ``qos``, ``constraint`` ...)."""
    if time_min < 1 or cpus_per_task < 1 or gpus_per_task < 0 or array_parallelism < 1:
        raise ValueError(f"slurm parameters must be positive (time_min={time_min}, cpus_per_task={cpus_per_task}, "
                         f"array_parallelism={array_parallelism}) and gpus_per_task >= 0 ({gpus_per_task})")
    params: dict[str, Any] = {"time": int(time_min), "nodes": 1, "ntasks_per_node": 1,
                              "cpus_per_task": int(cpus_per_task), "array_parallelism": int(array_parallelism),
                              "setup": list(setup), **extra}
    if gpus_per_task:
        params["gpus_per_node"] = int(gpus_per_task)
    if partition:
        params["partition"] = partition
    if mem_gb:
        params["mem"] = f"{int(mem_gb)}GB"
    return params


def make_executor(kind: str, folder: str | Path, **params: Any):
    """A submitit executor writing its files to ``folder``: ``local`` (params: ``timeout_min``, default one
    day) or ``slurm`` (params: those of ``slurm_parameters``)."""
    import submitit

    if kind == "local":
        executor = submitit.LocalExecutor(folder=str(folder))
        executor.update_parameters(timeout_min=int(params.pop("timeout_min", 24 * 60)), **params)
        return executor
    if kind == "slurm":
        executor = submitit.SlurmExecutor(folder=str(folder))  # needs srun: run it on the cluster's login node
        executor.update_parameters(**slurm_parameters(**params))
        return executor
    raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def _record(folder: Path, out_dir: Path, kind: str, job) -> None:
    """index.json: the run folder's latest job (id, executor, logs)."""
    path = folder / INDEX
    index = json.loads(path.read_text()) if path.exists() else {}
    index[str(out_dir)] = {"executor": kind, "job_id": str(job.job_id), "stdout": str(job.paths.stdout),
                           "stderr": str(job.paths.stderr), "submitted": time.strftime("%Y-%m-%d %H:%M:%S")}
    checkpoint.write_text_atomic(json.dumps(index, indent=1), path)


def submit_local(fn: Callable, jobs: Sequence[tuple[Path, tuple]], folder: str | Path, parallel: int = 2,
                 log: Callable[[str], None] | None = print, **params: Any) -> dict[Path, str]:
    """Run ``fn(*args)`` for each (run folder, args) as separate processes, ``parallel`` at once, each pinned
    to one GPU (round robin) when there are GPUs; waits for all. Returns {run folder: 'ran' or 'failed: ...'}."""
    folder = Path(folder)
    executor = make_executor("local", folder, **params)
    gpus = _gpu_count()
    pending, running, outcome = list(jobs), {}, {}
    while pending or running:
        free = [s for s in range(parallel) if s not in running]
        while pending and free:
            slot = free.pop(0)
            out_dir, args = pending.pop(0)
            if gpus:
                executor.update_parameters(gpus_per_node=1, visible_gpus=[slot % gpus])
            job = executor.submit(fn, *args)
            _record(folder, out_dir, "local", job)
            running[slot] = (out_dir, job)
        for slot, (out_dir, job) in list(running.items()):
            if job.done():
                del running[slot]
                try:
                    job.result()
                    outcome[out_dir] = "ran"
                except Exception as err:  # noqa: BLE001 - submitit re-raises the job's error; reported per run
                    outcome[out_dir] = _failure(err, job)
                if log:
                    log(f"{out_dir}: {outcome[out_dir]}")
        time.sleep(0.2)
    return outcome


def submit_slurm(fn: Callable, jobs: Sequence[tuple[Path, tuple]], folder: str | Path, wait: bool = False,
                 log: Callable[[str], None] | None = print, **params: Any) -> dict[Path, str]:
    """Submit ``fn(*args)`` for each (run folder, args) as one Slurm job array; returns {run folder: status}
    ('submitted (job ID)', or with ``wait`` 'ran' / 'failed: ...')."""
    folder = Path(folder)
    executor = make_executor("slurm", folder, **params)
    if not jobs:
        return {}
    submitted = executor.map_array(fn, *zip(*[args for _, args in jobs]))
    outcome = {}
    for (out_dir, _), job in zip(jobs, submitted):
        _record(folder, out_dir, "slurm", job)
        outcome[out_dir] = f"submitted ({job.job_id})"
    if log:
        log(f"{len(submitted)} jobs submitted to Slurm as array {submitted[0].job_id.split('_')[0]}; "
            f"logs in {folder}")
    if wait:
        for (out_dir, _), job in zip(jobs, submitted):
            try:
                job.result()
                outcome[out_dir] = "ran"
            except Exception as err:  # noqa: BLE001
                outcome[out_dir] = _failure(err, job)
    return outcome


def _failure(err: Exception, job) -> str:
    """'failed: <the job's error line> (log: <its stderr>)' from submitit's FailedJobError (which quotes the
    job's traceback between dashed lines)."""
    blocks = [b.strip() for b in str(err).split("-" * 22) if b.strip()]
    trace = blocks[1] if len(blocks) > 2 else str(err).strip()
    return f"failed: {trace.splitlines()[-1][:300]} (log: {job.paths.stderr})"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError, ValueError):
        return False
    try:  # a zombie (exited, not yet reaped) is not running
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def job_state(record: Mapping[str, str], folder: str | Path) -> str:
    """queued | running | failed | ended: the state of a job of the index, from its result file, else
    from Slurm (sacct) or, for a local job, from its process."""
    result = Path(folder) / f"{record['job_id']}_0_result.pkl"
    if result.exists():
        with open(result, "rb") as f:
            outcome = pickle.load(f)
        return "failed" if outcome[0] == "error" else "ended"
    if record["executor"] == "local":
        return "running" if _alive(int(record["job_id"])) else "failed"  # gone without a result: killed
    import submitit

    state = submitit.SlurmJob(str(folder), record["job_id"]).state.split()[0].upper()
    if state in SLURM_QUEUED:
        return "queued"
    return "running" if state in SLURM_RUNNING else "failed"  # CANCELLED, TIMEOUT, PREEMPTED, NODE_FAIL, ...


def read_index(folder: str | Path) -> dict[str, dict[str, str]]:
    path = Path(folder) / INDEX
    return json.loads(path.read_text()) if path.exists() else {}


__all__ = ["EXECUTORS", "slurm_parameters", "make_executor", "submit_local", "submit_slurm", "job_state", "read_index"]
