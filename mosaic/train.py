"""The thin training loop: play ``game.step`` on a run built by ``mosaic.build``, evaluate, checkpoint.

``train(cfg)`` trains (resuming from ``cfg.out_dir`` when it holds a checkpoint); ``load_run(out_dir)``
reads a finished run folder back, whatever its config, and never trains. What a run folder holds:
  {out_dir}/checkpoint.pt   every network, optimiser, scheduler, scaler, RNG and batcher state,
                            the step, the history and the config (atomic; resume-exact on CPU)
  {out_dir}/history.csv     one row per step (losses, lr; every eval_every steps the student's val score:
                            val_acc, top-1, or val_miou on a segmentation task)
  {out_dir}/metrics.json    final metrics + the exact config
  {out_dir}/samples.png     a grid of synthetic images (generator methods)
train() writes these files; ``mosaic.grid`` adds an executed notebook copy when it runs a grid through
papermill.

Command line: ``python -m mosaic.train --method kd_ood --steps 100 --out_dir runs/x`` (every RunConfig
field is a flag; ``-f params.yaml`` reads a parameter file first). On N processes:
``torchrun --nproc_per_node N -m mosaic.train ...`` (data-parallel, ``mosaic.distributed``).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torchvision.utils import save_image
from tqdm.auto import tqdm

from mosaic import checkpoint, distributed, game, patches
from mosaic.board import Board
from mosaic.build import (background_prior, build_ood, build_players, build_schedulers, build_streams, build_teacher,
                          check_background, check_teacher_module, evaluated_student, modules, optimizers, preflight,
                          teacher_config, unwrap)
from mosaic.config import RunConfig, resolve_device
from mosaic.data import ImageData, get_dataset
from mosaic.ema import ema_update
from mosaic.evaluate import evaluate, score, score_name
from mosaic.models import get_model
from mosaic.nnutil import num_threads
from mosaic.teacher import cache_path, load_teacher


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN/inf; the message names it and the last good checkpoint; ``row`` is the step's row."""

    def __init__(self, message: str, row: dict[str, float] | None = None) -> None:
        super().__init__(message)
        self.row = row


@dataclass
class RunResult:
    config: RunConfig  # the run's own config (as saved in its folder)
    metrics: dict[str, Any]  # what metrics.json holds
    history: list[dict[str, float]]  # one dict per step
    players: game.Players  # the trained networks (teacher frozen)
    ood: ImageData | None  # the OOD images as the players saw them (teacher's spec)
    out_dir: Path


@dataclass
class LoopState:
    """Where the loop stands: what a checkpoint holds besides the networks."""

    step: int = 0  # outer iterations done
    history: list[dict[str, float]] = field(default_factory=list)  # one row per step
    # the student with the best val score so far, under the history's key for it (val_acc / val_miou)
    best: dict[str, Any] = field(default_factory=lambda: {"step": -1, "student": None})
    wall_s: float = 0.0  # training seconds so far (resumed runs add up)


# ----------------------------------------------------------------------------- run folder

def _history_csv(history: list[dict[str, float]]) -> str:
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()


def _save(out: Path, cfg: RunConfig, state: LoopState, players: game.Players, schedulers, batchers) -> None:
    """checkpoint.pt (everything a resume needs) and history.csv, each written atomically.

    A checkpoint is written only when every weight and optimiser state in it is finite (else
    NonFiniteLossError, and the previous checkpoint stays the last good one).
    """
    models = {k: m.state_dict() for k, m in modules(players).items()}
    opts = {k: o.state_dict() for k, o in optimizers(players).items()}
    bad = checkpoint.nonfinite({"models": models, "optimizers": {k: o["state"] for k, o in opts.items()}})
    if bad:
        first = next(iter(bad))
        raise NonFiniteLossError(f"{sum(bad.values())} non-finite values in {len(bad)} tensors (first: {first}) "
                                 f"at step {state.step} of {cfg.method}; this checkpoint was not written")
    ckpt = {
        "config": cfg.to_dict(), "step": state.step, "wall_s": state.wall_s, "history": state.history,
        "best": state.best,
        "models": models, "optimizers": opts,
        "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
        "scalers": {k: s.state_dict() for k, s in players.scalers.items()},
        "batchers": {k: b.state_dict() for k, b in batchers.items()},
        "rng": checkpoint.rng_state(),  # every rank's: ranks draw the same global batches
        "world_size": distributed.world_size(),
    }
    if players.pool is not None:
        ckpt["pool"] = players.pool.state_dict()
    checkpoint.save_atomic(ckpt, out / "checkpoint.pt")
    checkpoint.write_text_atomic(_history_csv(state.history), out / "history.csv")


def _load_players(ckpt: dict, players: game.Players) -> None:
    for k, m in modules(players).items():
        m.load_state_dict(ckpt["models"][k])
    for k, o in optimizers(players).items():
        o.load_state_dict(ckpt["optimizers"][k])
    if players.pool is not None:
        players.pool.load_state_dict(ckpt["pool"])


def _resume(out: Path, cfg: RunConfig, players: game.Players, schedulers, batchers, device: str) -> LoopState:
    """The state of ``out/checkpoint.pt`` restored into the players, schedules, batchers and RNGs;
    a fresh LoopState when there is no checkpoint or ``cfg.resume`` is off."""
    path = out / "checkpoint.pt"
    if not (cfg.resume and path.exists()):
        return LoopState()
    ckpt = checkpoint.load(path, map_location=device,
                           what_to_do="move it away (the run restarts from step 0) or pass resume=False")
    diff = cfg.results_diff(ckpt["config"])
    if diff:
        raise ValueError(f"{path} was written with other parameters {diff} (saved, now); "
                         "pass resume=False to start over or choose another out_dir")
    distributed.check_resume(ckpt.get("world_size", 1), cfg.sync_bn, path)
    _load_players(ckpt, players)
    for k, s in schedulers.items():
        s.load_state_dict(ckpt["schedulers"][k])
    for k, s in players.scalers.items():
        s.load_state_dict(ckpt["scalers"][k])
    for k, b in batchers.items():
        b.load_state_dict(ckpt["batchers"][k])
    checkpoint.set_rng_state(ckpt["rng"])
    return LoopState(ckpt["step"], ckpt["history"], ckpt["best"], ckpt["wall_s"])


def finished(out_dir: str | Path, cfg: RunConfig | None = None) -> bool:
    """True when ``out_dir`` holds a finished run (metrics.json and checkpoint.pt), of ``cfg``'s results if given."""
    out = Path(out_dir)
    if not ((out / "metrics.json").exists() and (out / "checkpoint.pt").exists()):
        return False
    return cfg is None or cfg.same_results(read_metrics(out).get("config", {}))


def read_metrics(out_dir: str | Path) -> dict[str, Any]:
    """A run folder's metrics.json; an unreadable one says how to recover."""
    path = Path(out_dir) / "metrics.json"
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is unreadable ({err}); delete it: the next train() of this run evaluates the "
                         "final checkpoint again and rewrites it") from err


# ----------------------------------------------------------------------------- reading a finished run

def _find_teacher(cfg: RunConfig, metrics: dict[str, Any], out: Path) -> Path:
    """The teacher file of a finished run: the one it recorded, else its teacher_ckpt, else the cache."""
    candidates = [metrics.get("teacher_info", {}).get("path"), cfg.teacher_ckpt,
                  cache_path(teacher_config(cfg), cfg.teacher_dir)]
    for c in candidates:
        if c and Path(c).exists():
            return Path(c)
    looked = ", ".join(str(c) for c in candidates if c)
    raise FileNotFoundError(f"the teacher of the run in {out} is not on disk (looked at {looked}); pass it as "
                            "load_run(out_dir, teacher=...) or retrain it with mosaic.build.build_teacher(config)")


def load_run(out_dir: str | Path, device: str = "auto", teacher: nn.Module | None = None) -> RunResult:
    """Read a finished run folder: its config, players (from checkpoint.pt), history and metrics.

    Never trains and writes nothing: the run's own config (from its metrics.json) decides the players,
    so any finished run loads, whatever its parameters. The teacher comes from the file the run recorded
    (or ``teacher``); the OOD images are rebuilt as the run saw them. The global RNGs are left as they were.
    """
    out = Path(out_dir)
    if not (out / "metrics.json").exists():
        raise FileNotFoundError(f"{out} holds no finished run (no metrics.json); train one with "
                                f"mosaic.train.train(RunConfig(out_dir={str(out)!r}, ...)) or point at a finished run")
    metrics = read_metrics(out)
    cfg = RunConfig.from_dict(metrics["config"])
    device = resolve_device(device)
    rng = checkpoint.rng_state()
    if teacher is None:
        teacher, _ = load_teacher(_find_teacher(cfg, metrics, out), device, data_root=cfg.data_root)
    players = build_players(cfg.replace(compile=False), teacher, device)
    ckpt = checkpoint.load(out / "checkpoint.pt", map_location=device,
                           what_to_do="the run's weights are lost: train it again (resume=False)")
    _load_players(ckpt, players)
    ood = build_ood(cfg, teacher, device) if cfg.uses_ood else None
    checkpoint.set_rng_state(rng)
    return RunResult(cfg, metrics, ckpt["history"], players, ood, out)


def measure_patches(out_dir: str | Path, ood: str | None = None) -> dict[str, Any]:
    """``patch_rmse`` / ``patch_rmse_indomain`` of a finished generator run, as ``train`` writes them into
    metrics.json, measured from its checkpoint (for runs that finished before the metric existed; the same
    fixed-noise samples, so the same numbers for a CPU run). ``ood``: measure against the bank of another
    OOD source than the run's (a ``datafree`` run never saw its own). {} for a method without a generator."""
    run = load_run(out_dir, device="cpu")
    if run.players.generator is None:
        return {}
    cfg = run.config
    samples = game.fixed_samples(run.players.generator, PATCH_PROBE, cfg.z_dim, "cpu")
    test = get_dataset(cfg.dataset, "test", root=cfg.data_root, download=cfg.download)
    if ood is not None and ood != cfg.ood:
        return _patch_metrics(cfg.replace(ood=ood, ood_subset=0), samples, test, None, run.players.teacher)
    return _patch_metrics(cfg, samples, test, run.ood, run.players.teacher)


# ----------------------------------------------------------------------------- the loop

def iterate(players: game.Players, streams: game.Streams, schedulers: dict, cfg: RunConfig, device: str,
            step: int) -> dict[str, float]:
    """One iteration of the loop, as ``train`` runs it: ``game.step``, the schedules, the NaN guard.

    Returns the history row of step ``step`` (1-based); on evaluation steps (every ``eval_every`` game
    iterations) the row also holds the generator terms' gradient norms at x (``gx_*``). Raises
    NonFiniteLossError (with the row) when a loss is NaN/inf. With ``cfg.ema_s`` the student's EMA follows each
    game iteration (``mosaic.ema``). Steps 1..cfg.warmup_gan are patch-GAN warm-up iterations (no schedule steps); the
    game's own iterations follow. The benchmarks time this function, so they time the loop users run.
    """
    warmup = step <= cfg.warmup_gan
    diagnose = not warmup and cfg.eval_every > 0 and (step - cfg.warmup_gan) % cfg.eval_every == 0
    row = {"step": step, "lr_s": players.opt_s.param_groups[0]["lr"],
           **distributed.average(game.step(players, streams, cfg, device, warmup=warmup, diagnose=diagnose))}
    if not warmup:
        for s in schedulers.values():
            s.step()
        if players.student_ema is not None:
            ema_update(players.student_ema, unwrap(players.student), cfg.ema_s, step - cfg.warmup_gan)
    bad = [k for k, v in row.items() if not math.isfinite(v)]
    if bad:
        raise NonFiniteLossError(f"{', '.join(bad)} became {row[bad[0]]} at step {step} of {cfg.method}", row)
    weights = [p for m in modules(players).values() for p in m.parameters()]
    if not bool(torch.stack([p.detach().isfinite().all() for p in weights]).all()):  # one sync per step
        names = [k for k, m in modules(players).items() if checkpoint.nonfinite(m.state_dict())]
        raise NonFiniteLossError(f"the {' and '.join(names)} weights became non-finite at step {step} of "
                                 f"{cfg.method} (the losses were still finite)", row)
    return row


def _last_good(out: Path) -> str:
    path = out / "checkpoint.pt"
    return f"{path} (step {checkpoint.load(path)['step']})" if path.exists() else "none written yet"


def _snapshot(student: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in unwrap(student).state_dict().items()}


def _loop(cfg: RunConfig, out: Path, state: LoopState, players: game.Players, streams: game.Streams,
          schedulers: dict, batchers: dict, val: ImageData, device: str, progress: bool,
          board: Board | None = None) -> LoopState:
    """Iterate from ``state.step`` to ``warmup_gan + steps``: evaluate every eval_every game iterations,
    checkpoint every ckpt_every iterations, send each row (and, at evaluations, a sample grid) to ``board``.
    An evaluation scores the student on ``val`` with the task's number (``evaluate.score``: top-1, or mIoU on
    a segmentation task), written to the row as ``val_acc`` / ``val_miou``; the best one is kept for selection.
    With ``cfg.ema_s`` the scored student is the EMA, and the trained one's score goes to ``val_acc_live``.
    In a multi-process run rank 0 alone evaluates (its plain student, no collective) and writes; the other
    ranks go on to the next step's all-reduce."""
    t0 = time.perf_counter() - state.wall_s
    total = cfg.warmup_gan + cfg.steps
    main = distributed.is_main()
    key = f"val_{score_name(val.spec)}"  # val_acc, or val_miou on a segmentation task
    bar = tqdm(range(state.step, total), initial=state.step, total=total, desc=cfg.method,
               disable=not (progress and main))
    for it in bar:
        try:
            row = iterate(players, streams, schedulers, cfg, device, it + 1)
        except NonFiniteLossError as err:  # keep every step up to this one, name the last good checkpoint
            state.history.append(err.row)
            if main:
                checkpoint.write_text_atomic(_history_csv(state.history), out / "history.csv")
            raise NonFiniteLossError(f"{err}; last good checkpoint: {_last_good(out)}. history.csv has every "
                                     "step up to this one.", err.row) from None
        state.history.append(row)
        state.step = it + 1
        done = state.step == total
        game_step = state.step - cfg.warmup_gan  # <= 0 during the warm-up: nothing to evaluate yet
        evaluate_now = (cfg.eval_every and game_step > 0 and game_step % cfg.eval_every == 0) or done
        if main and evaluate_now:
            student = evaluated_student(players)
            row[key] = score(student, val, device=device)
            if players.student_ema is not None:
                row[f"{key}_live"] = score(unwrap(players.student), val, device=device)
            if row[key] > state.best.get(key, -1.0):
                state.best = {key: row[key], "step": state.step, "student": _snapshot(student)}
            bar.set_postfix({"loss_s": f"{row.get('loss_s', math.nan):.3f}", key: f"{row[key]:.1f}"})
        if board is not None:
            board.row(row)
            if evaluate_now and cfg.logger == "tensorboard" and players.generator is not None:  # every rank: BN may sync
                board.samples(game.fixed_samples(unwrap(players.generator), 64, cfg.z_dim, device), state.step)
        if main and ((cfg.ckpt_every and state.step % cfg.ckpt_every == 0) or done):
            state.wall_s = time.perf_counter() - t0
            try:
                _save(out, cfg, state, players, schedulers, batchers)
            except NonFiniteLossError as err:
                raise NonFiniteLossError(f"{err}; last good checkpoint: {_last_good(out)}. history.csv has "
                                         "every step up to this one.") from None
            if board is not None:
                board.flush()
    bar.close()
    state.wall_s = time.perf_counter() - t0
    return state


def _final_metrics(cfg: RunConfig, state: LoopState, players: game.Players, test: ImageData,
                   ood: ImageData | None, device: str, samples: torch.Tensor | None = None) -> dict[str, Any]:
    """The last student (the headline) and the val-selected one on the test split, with provenance; for a
    generator method, how close its ``samples`` are to real OOD patches (``_patch_metrics``).

    The val-selected student is scored with the number it was selected on: ``student_acc_valsel`` (top-1) or,
    on a segmentation task, ``student_miou_valsel`` (mIoU), with ``valsel_step`` and ``valsel_val_acc`` /
    ``valsel_val_miou``. With ``cfg.ema_s`` the student is the EMA of the trained one's weights, and the trained
    one's test score is ``student_acc_live`` / ``student_miou_live``."""
    teacher = players.teacher
    name = score_name(test.spec)  # acc | miou
    metrics = {"method": cfg.method, "dataset": cfg.dataset, "ood": cfg.ood, "steps": cfg.steps,
               **evaluate(evaluated_student(players), teacher, test, device=device)}
    if players.student_ema is not None:
        metrics[f"student_{name}_live"] = score(unwrap(players.student), test, device=device)
    if state.best["student"] is not None:
        selected = get_model(cfg.student, teacher.spec).to(device)
        selected.load_state_dict(state.best["student"])
        metrics[f"student_{name}_valsel"] = score(selected, test, device=device)
        metrics["valsel_step"] = state.best["step"]
        metrics[f"valsel_val_{name}"] = state.best[f"val_{name}"]
    if samples is not None:
        metrics.update(_patch_metrics(cfg, samples, test, ood, teacher))
    info = getattr(teacher, "info", None) or {"source": "a module passed to train() without provenance"}
    metrics.update({"wall_s": round(state.wall_s, 2), "device": str(device), "torch": torch.__version__,
                    **distributed.describe(cfg.batch_size),
                    "n_ood": len(ood) if ood is not None else 0, "teacher_info": info, "config": cfg.to_dict()})
    return metrics


PATCH_BANK = 50_000  # patches (every 2nd pixel of OOD train images) in the bank of _patch_metrics: 500 images at 28x28
PATCH_PROBE = 64  # images per set measured against it


def _patch_metrics(cfg: RunConfig, samples: torch.Tensor, test: ImageData, ood: ImageData | None,
                   teacher: nn.Module) -> dict[str, Any]:
    """The mosaic distance (``patches.patch_rmse``, ``cfg.patch_size`` patches) of the run's fixed-noise samples,
    and of in-domain test images as the scale, against the same bank of real OOD train images: the first
    images of a permutation seeded 0 (about ``PATCH_BANK`` patches), so every method and seed of a pair meets
    the same bank. Samples below the in-domain images are closer to real OOD patches than the teacher's own
    data. The full OOD set, whatever ``ood_subset``; ``datafree`` never sees OOD images, its bank is read from
    ``cfg.ood`` all the same (nothing is measured when that set cannot be read)."""
    if ood is None or cfg.ood_subset:
        try:
            ood = build_ood(cfg.replace(ood_subset=0), teacher, "cpu")
        except (FileNotFoundError, ValueError, RuntimeError):
            return {}
    patch = min(cfg.patch_size, ood.images.shape[-1])
    per_image = len(patches.grid_starts(ood.images.shape[-1], patch, 2)) ** 2
    pick = torch.Generator().manual_seed(0)
    bank = ood.images[torch.randperm(len(ood), generator=pick)[:-(-PATCH_BANK // per_image)]].float() / 255
    in_domain = test.images[torch.randperm(len(test), generator=pick)[:PATCH_PROBE]].float() / 255
    rmse = patches.patch_rmse({"synthetic": samples[:PATCH_PROBE].clamp(0, 1), "in_domain": in_domain},
                              bank, patch)
    return {"patch_rmse": rmse["synthetic"], "patch_rmse_indomain": rmse["in_domain"]}


def _write_samples(x: torch.Tensor, path: Path) -> None:
    """samples.png: a grid of the fixed-noise samples x (n, C, H, W) (``game.fixed_samples``), written atomically."""
    tmp = path.with_name(f".{path.name}.tmp.png")
    save_image(x.clamp(0, 1), tmp, nrow=8, padding=1, pad_value=1.0)
    tmp.replace(path)


def train(cfg: RunConfig, teacher: nn.Module | None = None, progress: bool = True) -> RunResult:
    """Run ``cfg`` to completion, resuming from ``cfg.out_dir`` when it holds a checkpoint of the same results.

    A folder that already holds this run finished (``finished``) is not trained again: it is read with
    ``load_run``. ``teacher``: a frozen teacher to use instead of building ``cfg``'s (its ``info`` is recorded).
    Under torchrun (``WORLD_SIZE`` > 1) it joins the process group and trains data-parallel
    (``mosaic.distributed``): ``batch_size`` is the global batch, rank 0 alone writes the run folder.
    """
    out = Path(cfg.out_dir)
    distributed.setup(cfg.device)  # one process: nothing to join
    if cfg.resume and finished(out, cfg):
        return load_run(out, device=cfg.device, teacher=teacher)
    preflight(cfg)  # nothing is created or trained before every check has passed
    if teacher is not None:
        check_teacher_module(cfg, teacher)
    with distributed.writer(out), num_threads(cfg.threads):  # rank 0 makes and locks out (RunLockedError)
        return _train(cfg, out, teacher, progress)


def _train(cfg: RunConfig, out: Path, teacher: nn.Module | None, progress: bool) -> RunResult:
    device = distributed.setup(cfg.device)  # under torchrun on GPUs: this rank's cuda:LOCAL_RANK
    main = distributed.is_main()
    # setup: seeds, teacher, data, players (this order fixes every random draw of the run)
    checkpoint.seed_everything(cfg.seed)
    with distributed.rank0_first():  # rank 0 trains/caches the teacher and downloads; the other ranks then read
        if teacher is None:
            teacher, _ = build_teacher(cfg, device, progress and main)
        val = get_dataset(cfg.dataset, "val", root=cfg.data_root, download=cfg.download)
        test = get_dataset(cfg.dataset, "test", root=cfg.data_root, download=cfg.download)
    checkpoint.seed_everything(cfg.seed)  # the run's randomness does not depend on the teacher's cache state
    players = build_players(cfg, teacher, device, parallel=True)
    schedulers = build_schedulers(players, cfg.steps, cfg.warmup_iterations)
    streams, batchers, ood = build_streams(cfg, teacher, device)
    check_background(cfg, val.classes)
    if cfg.balance_bg == "ood":
        players.balance_prior = background_prior(teacher, ood, device)  # fixed by the teacher and the OOD images
    # resume, play, evaluate, write: metrics.json last, so it marks a finished run
    state = _resume(out, cfg, players, schedulers, batchers, device)  # every rank reads rank 0's checkpoint
    distributed.barrier()  # every rank has read it before rank 0 changes the folder
    if main:
        (out / "metrics.json").unlink(missing_ok=True)  # training again (resume=False): the folder is not finished now
    board = Board(out, main and cfg.logger == "tensorboard", first_step=state.step + 1)  # rank 0 alone writes
    try:
        state = _loop(cfg, out, state, players, streams, schedulers, batchers, val, device, progress, board)
        # fixed-noise samples on every rank (with global-batch BatchNorm the generator's forward is a collective)
        samples = None if players.generator is None else game.fixed_samples(unwrap(players.generator), 64, cfg.z_dim, device)
        metrics = _final_metrics(cfg, state, players, test, ood, device, samples) if main else {}
        board.metrics(metrics, state.step)
    finally:
        board.close()
    if samples is not None and main:
        _write_samples(samples, out / "samples.png")
    if main:
        checkpoint.write_text_atomic(json.dumps(metrics, indent=2), out / "metrics.json")
    metrics, state.history = distributed.broadcast((metrics, state.history))  # every rank returns rank 0's
    return RunResult(cfg, metrics, state.history, players, ood, out)


# ----------------------------------------------------------------------------- command line

BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _boolean(text: str) -> bool:
    """A command-line boolean: true/false, yes/no, on/off, 1/0 (any case); anything else is an error."""
    try:
        return BOOLEANS[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a boolean; use true or false") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mosaic.train", description="Run one OOD-KD method.")
    p.add_argument("-f", "--params", help="YAML file of RunConfig fields (flags override it)")
    for f in dataclasses.fields(RunConfig):
        kind = {"bool": _boolean, "int": int, "float": float}.get(str(f.type), str)
        nargs = 2 if f.name == "betas" else None
        p.add_argument(f"--{f.name}", type=float if nargs else kind, nargs=nargs, default=None,
                       metavar=str(f.type).upper() if not nargs else ("B1", "B2"))
    return p


# errors whose message says what went wrong and what to do: the command prints it without a traceback
USER_ERRORS = (ValueError, FileNotFoundError, PermissionError, OSError, checkpoint.RunLockedError,
               checkpoint.UnreadableFileError, NonFiniteLossError)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = _parser()
    args = vars(parser.parse_args(argv))
    params: dict[str, Any] = {}
    params_file = args.pop("params")
    try:
        if params_file:
            import yaml

            loaded = yaml.safe_load(Path(params_file).read_text()) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{params_file} must hold a mapping of RunConfig fields, got {type(loaded).__name__}")
            params.update(loaded)
        params.update({k: v for k, v in args.items() if v is not None})
        metrics = train(RunConfig.from_dict(params)).metrics
    except USER_ERRORS as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    if distributed.is_main():
        print(json.dumps({k: metrics[k] for k in ("method", "student_acc", "student_miou", "teacher_acc",
                                                  "teacher_miou", "agreement", "wall_s") if k in metrics}))
    distributed.shutdown()  # under torchrun: leave the process group (a no-op on one process)
    return metrics


if __name__ == "__main__":
    main()
