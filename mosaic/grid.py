"""Grids of runs: expand a spec into configs, run only what is missing, gather metrics.json into a table.

A grid spec maps a row name to the RunConfig fields that differ from a base config, optionally
grouped one level deeper (``{group: {name: overrides}}``). ``expand`` crosses it with seeds:

    runs = expand({"full": {}, "w_local=0": {"w_local": 0.0}}, base={"steps": 100}, seeds=[0, 1])

Run folders are named by the config, not by the row: ``{out_root}/{label}/seed{seed}`` where
``label`` lists the result-changing fields that differ from RunConfig's defaults (``default`` when
none do; long labels end in a hash). Two rows with the same config share one run, and changing a
parameter (say ``steps``) sends the grid to new folders without touching the old ones.

A run is *done* when its folder holds a ``metrics.json`` whose config gives the same results as the
run's (``RunConfig.same_results``: equal up to ``RunConfig.NEUTRAL``, the fields such as out_dir,
device or eval_every that cannot change a number). ``run_grid`` skips done runs, resumes interrupted ones from their ``checkpoint.pt`` and raises
``StaleRunError`` for a folder written with another config. Runs go through the library
(``mosaic.train.train``) or, with ``backend="papermill"``, through ``notebooks/02_train.ipynb``
(an executed copy is kept in each run folder). ``collect`` turns the runs' metrics.json files into
one pandas row per (row, seed); ``summarize`` gives mean, std and n per row.

Where the runs execute (``executor``): ``inprocess`` (one after the other, here), ``local`` (separate
processes through submitit, ``parallel`` at once, one GPU each when there are GPUs) or ``slurm`` (one
submitit job array; ``executor_params``: see ``mosaic.jobs.slurm_parameters``). ``job_status`` lists
every run folder as todo, partial, queued, running, done or failed (with the failed job's log).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from mosaic import jobs
from mosaic.build import preflight
from mosaic.config import RunConfig
from mosaic.train import train

MAX_LABEL = 80  # longer folder labels are cut and end in a hash
# the numbers a finished run's metrics.json holds (classification, then segmentation): NaN for unfinished rows
METRIC_COLUMNS = ("student_acc", "student_acc_valsel", "teacher_acc",
                  "student_miou", "student_miou_valsel", "teacher_miou", "pixel_acc", "agreement", "wall_s")

Grid = Mapping[str, Mapping[str, Any]]  # name -> overrides, or group -> name -> overrides


class StaleRunError(RuntimeError):
    """A run folder holds results of a different config than the one asked for."""


@dataclass(frozen=True)
class GridRun:
    name: str  # the row this run belongs to (several rows may share one run folder)
    group: str  # the row's group ("" for a flat grid)
    seed: int
    config: RunConfig  # the full config, out_dir set to the run folder

    @property
    def out_dir(self) -> Path:
        return Path(self.config.out_dir)

    @property
    def metrics_path(self) -> Path:
        return self.out_dir / "metrics.json"


# ----------------------------------------------------------------------------- expansion

def run_label(cfg: RunConfig) -> str:
    """Folder label of a config: its result-changing non-default fields, e.g. ``steps=100,w_local=0.0``."""
    defaults = RunConfig().results_key()
    diff = {k: v for k, v in cfg.results_key().items() if k != "seed" and v != defaults[k]}
    if not diff:
        return "default"
    text = ",".join(f"{k}={v}" for k, v in sorted(diff.items()))
    label = re.sub(r"[^A-Za-z0-9_.,=+-]+", "_", text).strip("_")
    if len(label) > MAX_LABEL or label != text:  # cut, or characters replaced: a hash keeps it unique
        digest = hashlib.sha1(json.dumps(diff, sort_keys=True).encode()).hexdigest()[:8]
        label = f"{label[:MAX_LABEL - 9]}-{digest}"
    return label


def _flatten(grid: Grid) -> list[tuple[str, str, dict[str, Any]]]:
    """(group, name, overrides) rows of a flat or grouped grid, in order."""
    rows = []
    for key, value in grid.items():
        if not isinstance(value, Mapping):
            raise TypeError(f"grid entry {key!r} must map to a dict of RunConfig overrides, got {value!r}")
        if value and all(isinstance(v, Mapping) for v in value.values()):
            rows += [(key, name, dict(overrides)) for name, overrides in value.items()]
        else:
            rows.append(("", key, dict(value)))
    names = [name for _, name, _ in rows]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"grid row names must be unique; repeated: {duplicates}")
    return rows


def expand(grid: Grid, base: RunConfig | Mapping[str, Any] | None = None, seeds: Iterable[int] = (0,),
           out_root: str | Path = "runs/grid") -> list[GridRun]:
    """One GridRun per (row, seed), row-major. ``base`` holds the fields every row shares.

    Rows may not set ``seed`` or ``out_dir`` (they come from ``seeds`` and ``out_root``); unknown
    fields and invalid values fail here, naming the row.
    """
    base_dict = base.to_dict() if isinstance(base, RunConfig) else dict(base or {})
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("expand needs at least one seed")
    runs = []
    for group, name, overrides in _flatten(grid):
        reserved = sorted({"seed", "out_dir"} & set(overrides))
        if reserved:
            raise ValueError(f"grid row {name!r} sets {reserved}: use expand's seeds / out_root instead")
        for seed in seeds:
            try:
                cfg = RunConfig.from_dict({**base_dict, **overrides, "seed": seed})
            except (TypeError, ValueError) as err:
                raise ValueError(f"grid row {name!r}: {err}") from err
            cfg = cfg.replace(out_dir=str(Path(out_root) / run_label(cfg) / f"seed{seed}"))
            runs.append(GridRun(name, group, seed, cfg))
    return runs


def unique_runs(runs: Sequence[GridRun]) -> list[GridRun]:
    """The first GridRun of each run folder (rows with equal configs share a folder)."""
    seen: dict[Path, GridRun] = {}
    for r in runs:
        seen.setdefault(r.out_dir, r)
    return list(seen.values())


# ----------------------------------------------------------------------------- is it done?

def status(run: GridRun) -> str:
    """``done`` (metrics.json of this config), ``partial`` (a checkpoint, no metrics) or ``todo``.

    Raises StaleRunError when the folder's metrics.json comes from another config.
    """
    if run.metrics_path.exists():
        saved = json.loads(run.metrics_path.read_text()).get("config", {})
        diff = run.config.results_diff(saved)
        if diff:
            raise StaleRunError(f"{run.metrics_path} was written with other parameters {diff} (saved, asked); "
                                "delete that folder or use another out_root")
        return "done"
    return "partial" if (run.out_dir / "checkpoint.pt").exists() else "todo"


# ----------------------------------------------------------------------------- running

def _train_api(cfg: RunConfig) -> None:
    train(cfg, progress=False)


def run_notebook(notebook: str | Path, output: str | Path, parameters: Mapping[str, Any] | None = None,
                 cwd: str | Path = ".", kernel: str = "python3") -> None:
    """Execute a notebook with papermill, then drop execution-timing metadata from the result.

    ``output`` may be ``notebook`` itself (execute in place, e.g. to store reference outputs).
    """
    import papermill as pm

    pm.execute_notebook(str(notebook), str(output), parameters=dict(parameters or {}), cwd=str(cwd),
                        kernel_name=kernel, progress_bar=False)
    strip_execution_metadata(output)


def strip_execution_metadata(path: str | Path) -> None:
    """Keep only the metadata that belongs in a stored reference notebook (nbconvert's
    ClearMetadataPreprocessor: cell tags, the kernel and language info), and drop papermill's injected
    parameters cell when it sets nothing. Timings, papermill's and the widgets' state go."""
    import nbformat
    from nbconvert.preprocessors import ClearMetadataPreprocessor

    nb = nbformat.read(str(path), as_version=4)
    keep = ClearMetadataPreprocessor(preserve_cell_metadata_mask={"tags"},
                                     preserve_nb_metadata_mask={"kernelspec", "language_info"})
    nb, _ = keep.preprocess(nb, {})
    cells = []
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        code = [line for line in cell.source.splitlines() if line.strip() and not line.startswith("#")]
        if "injected-parameters" in tags and not code:
            continue  # an injected cell that sets nothing
        if not tags:
            cell.metadata.pop("tags", None)
        cells.append(cell)
    nb.cells = cells
    nbformat.write(nb, str(path))


def _train_papermill(notebook: str | Path) -> Callable[[RunConfig], None]:
    def train_one(cfg: RunConfig) -> None:
        params = cfg.to_dict()  # every field: the notebook's own defaults never decide
        Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
        run_notebook(notebook, Path(cfg.out_dir) / Path(notebook).name, params, cwd=Path.cwd())

    return train_one


def _job(backend: str, notebook: str, config: dict[str, Any], cwd: str) -> None:
    """One run in a submitit job (another process, maybe another machine): as in-process, from ``cwd``."""
    os.chdir(cwd)
    cfg = RunConfig.from_dict(config)
    (_train_api if backend == "api" else _train_papermill(notebook))(cfg)


def jobs_folder(runs: Sequence[GridRun]) -> Path:
    """Where a grid's submitit jobs keep their files: ``_jobs`` next to the runs' label folders."""
    roots = {str(r.out_dir.parent.parent) for r in runs}
    return Path(os.path.commonpath(sorted(roots))) / "_jobs"


def run_grid(runs: Sequence[GridRun], backend: str = "api", notebook: str | Path = "notebooks/02_train.ipynb",
             keep_going: bool = False, log: Callable[[str], None] | None = print, executor: str = "inprocess",
             parallel: int = 2, executor_params: Mapping[str, Any] | None = None, wait: bool = True,
             jobs_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Run every run folder that is not done; returns one status row per folder.

    backend: ``api`` (mosaic.train.train) or ``papermill`` (``notebook`` per run).
    executor: ``inprocess`` (one after the other in this process), ``local`` (submitit processes,
    ``parallel`` at once, one GPU each when there are GPUs; waits for all) or ``slurm`` (one job array;
    ``executor_params`` as ``mosaic.jobs.slurm_parameters``; ``wait=False`` returns once submitted).
    keep_going: in-process, record a failing run and continue (the error is raised at the end), else stop
    at once; with jobs, the runs are independent: every job runs and failures are raised at the end.
    Every run still to do passes ``mosaic.build.preflight`` first: a bad row fails before any run trains.
    Done runs are skipped and partial ones resume, whatever the executor: re-submitting a grid runs
    only what is missing.
    """
    if backend not in ("api", "papermill"):
        raise ValueError(f"backend must be 'api' or 'papermill', got {backend!r}")
    if executor not in jobs.EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(jobs.EXECUTORS)}, got {executor!r}")
    folders = unique_runs(runs)
    before = {run.out_dir: status(run) for run in folders}
    for run in folders:
        if before[run.out_dir] != "done":
            try:
                preflight(run.config)
            except (ValueError, OSError) as err:
                raise ValueError(f"grid row {run.name!r} ({run.out_dir}): {err}") from err
    if executor != "inprocess":
        return _run_jobs(folders, before, backend, notebook, log, executor, parallel, dict(executor_params or {}),
                         wait, Path(jobs_dir) if jobs_dir else jobs_folder(folders))
    train_one = _train_api if backend == "api" else _train_papermill(notebook)
    rows, errors = [], []
    for i, run in enumerate(folders, 1):
        row = {"run": str(run.out_dir), "before": before[run.out_dir], "status": "skipped", "seconds": 0.0}
        if before[run.out_dir] != "done":
            t0 = time.perf_counter()
            try:
                train_one(run.config)
                row["status"] = "resumed" if before[run.out_dir] == "partial" else "ran"
            except Exception as err:  # noqa: BLE001 - reported with the run's folder, re-raised below
                row["status"] = f"failed: {type(err).__name__}: {err}"
                errors.append((run, err))
                if not keep_going:
                    raise
            row["seconds"] = round(time.perf_counter() - t0, 1)
        if log:
            log(f"[{i}/{len(folders)}] {run.out_dir}: {row['status']} ({row['seconds']:.0f} s)")
        rows.append(row)
    if errors:
        run, err = errors[0]
        raise RuntimeError(f"{len(errors)} of {len(folders)} runs failed; first: {run.out_dir}") from err
    return rows


def _run_jobs(folders: list[GridRun], before: dict[Path, str], backend: str, notebook: str | Path,
              log: Callable[[str], None] | None, executor: str, parallel: int, params: dict[str, Any],
              wait: bool, folder: Path) -> list[dict[str, Any]]:
    """run_grid through submitit: every run to do becomes one job (``_job``)."""
    todo = [(run.out_dir, (backend, str(Path(notebook).absolute()), run.config.to_dict(), str(Path.cwd())))
            for run in folders if before[run.out_dir] != "done"]
    t0 = time.perf_counter()
    if executor == "local":
        outcome = jobs.submit_local(_job, todo, folder, parallel=parallel, log=log, **params)
    else:
        outcome = jobs.submit_slurm(_job, todo, folder, wait=wait, log=log, **params)
    seconds = round(time.perf_counter() - t0, 1)
    rows = []
    for run in folders:
        state = outcome.get(run.out_dir, "skipped")
        if state == "ran" and before[run.out_dir] == "partial":
            state = "resumed"
        rows.append({"run": str(run.out_dir), "before": before[run.out_dir], "status": state,
                     "seconds": 0.0 if state == "skipped" else seconds})
    failed = [r for r in rows if r["status"].startswith("failed")]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(folders)} runs failed; first: {failed[0]['run']}: "
                           f"{failed[0]['status']}; grid.job_status(runs) lists them all")
    return rows


def job_status(runs: Sequence[GridRun], jobs_dir: str | Path | None = None) -> "pd.DataFrame":  # noqa: F821
    """One row per run folder: its state and where to look.

    state: ``done`` (metrics.json of its config), ``todo`` / ``partial`` (no job: nothing / a checkpoint),
    ``queued`` / ``running`` (its latest job), ``failed`` (the job failed, was killed or ended without
    metrics.json; ``log`` is its stderr; submit the grid again to resume it), ``stale`` (another config's
    metrics.json). ``tensorboard``: the run folder when it holds TensorBoard event files.
    """
    import pandas as pd

    folders = unique_runs(runs)
    folder = Path(jobs_dir) if jobs_dir else jobs_folder(folders)
    index = jobs.read_index(folder)
    rows = []
    for run in folders:
        record = index.get(str(run.out_dir))
        try:
            state = status(run)
        except StaleRunError:
            state = "stale"
        log = ""
        if state in ("todo", "partial") and record:
            state = jobs.job_state(record, folder)
            state = "failed" if state == "ended" else state  # the job ended without metrics.json
            log = record["stderr"] if state == "failed" else ""
        board = str(run.out_dir) if any(run.out_dir.glob("events.out.tfevents.*")) else ""
        rows.append({"run": str(run.out_dir), "state": state, "job": record["job_id"] if record else "",
                     "log": log, "tensorboard": board})
    return pd.DataFrame(rows, columns=["run", "state", "job", "log", "tensorboard"])


# ----------------------------------------------------------------------------- tables

def read_metrics(path: str | Path) -> dict[str, Any]:
    """A metrics.json as one flat row: its scalar metrics, then every config field not already there."""
    m = json.loads(Path(path).read_text())
    row = {k: v for k, v in m.items() if not isinstance(v, (dict, list))}
    for k, v in m.get("config", {}).items():
        row.setdefault(k, tuple(v) if isinstance(v, list) else v)
    row["out_dir"] = str(Path(path).parent)
    return row


def load_metrics(root: str | Path) -> "pd.DataFrame":  # noqa: F821
    """Every metrics.json under ``root`` (recursively) as one row each, sorted by folder."""
    import pandas as pd

    paths = sorted(Path(root).rglob("metrics.json"))
    return pd.DataFrame([read_metrics(p) for p in paths])


def collect(runs: Sequence[GridRun]) -> "pd.DataFrame":  # noqa: F821
    """One row per (row name, seed): group, name, seed, the run's metrics and config fields.

    Runs without a metrics.json of their config get NaN metrics and ``done=False``.
    """
    import pandas as pd

    rows = []
    for run in runs:
        row: dict[str, Any] = {"group": run.group, "name": run.name, "seed": run.seed}
        done = status(run) == "done"
        row["done"] = done
        if done:
            row.update({k: v for k, v in read_metrics(run.metrics_path).items() if k not in row})
        else:
            row.update({k: math.nan for k in METRIC_COLUMNS})
            row.update({k: v for k, v in run.config.to_dict().items() if k not in row})
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(table: "pd.DataFrame", value: str = "student_acc", by: Sequence[str] = ("group", "name"),  # noqa: F821
              reference: str | None = None, also: Sequence[str] = ()) -> "pd.DataFrame":  # noqa: F821
    """Mean, std (over seeds; NaN for one seed) and n of ``value`` per row, in row order.

    ``reference``: a row name; adds ``vs_<reference>``, each row's mean minus that row's, and
    ``vs_<reference>_se``, the standard error of that difference paired by seed (the std of the per-seed
    differences over the square root of their count, on the seeds both rows finished; NaN under two seeds).
    ``also``: more columns whose mean per row is added under their own name.
    """
    by = [c for c in by if c in table.columns]
    done = table[table["done"].astype(bool)] if "done" in table.columns else table
    groups = done.groupby(by, sort=False)
    out = groups[value].agg(["mean", "std", "count"]).rename(columns={"count": "n"})
    for column in also:
        out[column] = groups[column].mean()
    out = out.reset_index()
    if reference is not None:
        ref = out.loc[out["name"] == reference, "mean"]
        if ref.empty:
            raise ValueError(f"reference row {reference!r} has no finished run")
        out["vs_" + reference] = out["mean"] - float(ref.iloc[0])
        if "seed" in done.columns:
            ref_by_seed = done[done["name"] == reference].groupby("seed")[value].mean()
            diffs = done[value] - done["seed"].map(ref_by_seed)  # NaN where the reference lacks that seed
            paired = diffs.groupby([done[c] for c in by], sort=False)
            se = (paired.std() / paired.count() ** 0.5).rename("vs_" + reference + "_se")
            out = out.merge(se, left_on=by, right_index=True, how="left")  # by row key, not by position
    return out


# ----------------------------------------------------------------------------- the ablation grid

def ablation_grid(groups: Sequence[str] = ("reference", "loss", "discriminator", "ood"),
                  patch_sizes: Sequence[int] = (4, 10, 18),
                  ood_sources: Mapping[str, str] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """The paper's ablations as a grouped grid spec, each row a change to the full method.

    reference: the full method and plain KD on the OOD images; loss: each generator term removed;
    discriminator: none, one full-image logit, patch discriminators of ``patch_sizes`` pixels;
    ood: other OOD sources (name -> dataset name or folder:PATH; the base config's ood is the full
    method's row).
    """
    known = ("reference", "loss", "discriminator", "ood")
    unknown = sorted(set(groups) - set(known))
    if unknown:
        raise ValueError(f"unknown ablation group(s) {unknown}; choose from {known}")
    spec: dict[str, dict[str, dict[str, Any]]] = {
        "reference": {"MosaicKD": {}, "KD on OOD": {"method": "kd_ood"}},
        "loss": {f"{w}=0": {w: 0.0} for w in ("w_local", "w_align", "w_balance", "w_adv")},
        "discriminator": {"no D": {"discriminator": "none"}, "full-image D": {"discriminator": "full"},
                          **{f"patch {p}": {"discriminator": "patch", "patch_size": int(p)} for p in patch_sizes}},
        "ood": {f"OOD {name}": {"ood": source} for name, source in (ood_sources or {}).items()},
    }
    return {g: spec[g] for g in groups if spec[g]}


def _store_main(argv: Sequence[str] | None = None) -> None:
    """``python -m mosaic.grid NOTEBOOK...``: execute notebooks in place (stored reference outputs)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m mosaic.grid",
                                description="Execute notebooks in place with papermill and strip timing metadata, "
                                            "so that their outputs serve as the nbval reference.")
    p.add_argument("notebooks", nargs="+")
    p.add_argument("--cwd", default=".", help="working directory of the kernel (default: .)")
    args = p.parse_args(argv)
    for nb in args.notebooks:
        t0 = time.perf_counter()
        run_notebook(nb, nb, cwd=args.cwd)
        print(f"{nb}: executed in {time.perf_counter() - t0:.0f} s")


__all__ = ["GridRun", "StaleRunError", "expand", "unique_runs", "run_label", "status", "run_grid", "job_status",
           "jobs_folder",
           "run_notebook", "strip_execution_metadata", "read_metrics", "load_metrics", "collect", "summarize",
           "ablation_grid"]

if __name__ == "__main__":
    _store_main()
