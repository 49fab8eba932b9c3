"""The thin training loop: build a run from a RunConfig, play ``game.step``, evaluate, checkpoint.

This is the only module that writes a run folder:
  {out_dir}/checkpoint.pt   every network, optimiser, scheduler, scaler, RNG and batcher state,
                            the step, the history and the config (atomic; resume-exact on CPU)
  {out_dir}/history.csv     one row per step (losses, lr, val_acc every eval_every steps)
  {out_dir}/metrics.json    final metrics + the exact config
  {out_dir}/samples.png     a grid of synthetic images (generator methods)

Command line: ``python -m mosaic.train --method kd_ood --steps 100 --out_dir runs/x`` (every RunConfig
field is a flag; ``-f params.yaml`` reads a parameter file first).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from mosaic import checkpoint, game
from mosaic.config import RunConfig, resolve_device
from mosaic.data import Batcher, ImageData, adapt, entropy_subset, get_dataset
from mosaic.evaluate import accuracy, evaluate
from mosaic.models import Generator, get_classifier, get_discriminator
from mosaic.teacher import TeacherConfig, get_teacher, load_teacher

# fields that may change between a run and its resumption without changing its results
RESUMABLE_CHANGES = {"out_dir", "resume", "device", "eval_every", "ckpt_every", "data_root", "download", "teacher_dir",
                     "channels_last", "compile"}


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN/inf; the message names it and the last good checkpoint."""


@dataclass
class RunResult:
    metrics: dict[str, Any]  # what metrics.json holds
    history: list[dict[str, float]]  # one dict per step
    players: game.Players  # the trained networks (teacher frozen)
    ood: ImageData | None  # the OOD images as the players saw them (teacher's spec)
    out_dir: Path


# ----------------------------------------------------------------------------- building a run

def build_teacher(cfg: RunConfig, device: str, progress: bool = True) -> tuple[nn.Module, dict]:
    """Load ``cfg.teacher_ckpt`` or the cached teacher (training it if needed). Frozen either way."""
    if cfg.teacher_ckpt:
        teacher, info = load_teacher(cfg.teacher_ckpt, device, data_root=cfg.data_root)
        return teacher, {**info, "path": cfg.teacher_ckpt}
    tcfg = TeacherConfig(dataset=cfg.dataset, arch=cfg.teacher, epochs=cfg.teacher_epochs, seed=cfg.teacher_seed,
                         data_root=cfg.data_root, download=cfg.download)
    return get_teacher(tcfg, cfg.teacher_dir, device, progress)


def build_ood(cfg: RunConfig, teacher: nn.Module, device: str) -> ImageData:
    """OOD images adapted to the teacher's spec; optionally the N highest-entropy ones (paper's †)."""
    ood = adapt(get_dataset(cfg.ood, "train", root=cfg.data_root, download=cfg.download), teacher.spec)
    if cfg.ood_subset:
        ood = entropy_subset(ood, teacher, cfg.ood_subset, device=device)
    return ood


def build_players(cfg: RunConfig, teacher: nn.Module, device: str) -> game.Players:
    """Student, generator and discriminator for ``cfg.method`` with their optimisers."""
    spec = teacher.spec
    student = get_classifier(cfg.student, spec).to(device)
    opt_s = torch.optim.SGD(student.parameters(), lr=cfg.lr_s, momentum=cfg.momentum_s, weight_decay=cfg.wd_s)
    players = game.Players(teacher=teacher, student=student, opt_s=opt_s)
    if cfg.uses_generator:
        players.generator = Generator(spec, z_dim=cfg.z_dim, ngf=cfg.ngf).to(device)
        players.opt_g = torch.optim.Adam(players.generator.parameters(), lr=cfg.lr_g, betas=cfg.betas)
    if cfg.uses_discriminator:
        players.discriminator = get_discriminator(cfg.discriminator, spec, patch_size=cfg.patch_size, ndf=cfg.ndf).to(device)
        players.opt_d = torch.optim.Adam(players.discriminator.parameters(), lr=cfg.lr_d, betas=cfg.betas)
    if cfg.channels_last:
        for m in (players.teacher, players.student, players.generator, players.discriminator):  # teacher: frozen, safe
            if m is not None:
                m.to(memory_format=torch.channels_last)
    if cfg.compile:  # compiled modules share parameters with the originals: optimisers and checkpoints see the same tensors
        players.student = torch.compile(players.student)
        players.generator = players.generator and torch.compile(players.generator)
        players.discriminator = players.discriminator and torch.compile(players.discriminator)
    if cfg.precision == "fp16":
        players.scalers = {k: torch.amp.GradScaler("cuda") for k in ("s", "g", "d")}
    return players


def build_schedulers(players: game.Players, steps: int) -> dict[str, torch.optim.lr_scheduler.LRScheduler]:
    """Cosine to 0 over ``steps`` outer iterations, stepped once per iteration (all players)."""
    cosine = lambda i: 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps))  # noqa: E731
    opts = {"s": players.opt_s, "g": players.opt_g, "d": players.opt_d}
    return {k: torch.optim.lr_scheduler.LambdaLR(o, cosine) for k, o in opts.items() if o is not None}


def _unwrap(m: nn.Module) -> nn.Module:
    return getattr(m, "_orig_mod", m)  # torch.compile wraps; checkpoints hold the plain module's keys


def _modules(players: game.Players) -> dict[str, nn.Module]:
    return {k: _unwrap(m) for k, m in (("student", players.student), ("generator", players.generator),
                                       ("discriminator", players.discriminator)) if m is not None}


def _optimizers(players: game.Players) -> dict[str, torch.optim.Optimizer]:
    return {k: o for k, o in (("opt_s", players.opt_s), ("opt_g", players.opt_g), ("opt_d", players.opt_d)) if o is not None}


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


def _save(path: Path, cfg: RunConfig, step: int, players, schedulers, batchers, history, best, wall_s) -> None:
    state = {
        "config": cfg.to_dict(), "step": step, "wall_s": wall_s, "history": history, "best": best,
        "models": {k: m.state_dict() for k, m in _modules(players).items()},
        "optimizers": {k: o.state_dict() for k, o in _optimizers(players).items()},
        "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
        "scalers": {k: s.state_dict() for k, s in players.scalers.items()},
        "batchers": {k: b.state_dict() for k, b in batchers.items()},
        "rng": checkpoint.rng_state(),
    }
    checkpoint.save_atomic(state, path / "checkpoint.pt")
    checkpoint.write_text_atomic(_history_csv(history), path / "history.csv")


def _restore(state: dict, cfg: RunConfig, players, schedulers, batchers) -> None:
    saved = RunConfig.from_dict(state["config"]).to_dict()
    diff = {k: (saved[k], v) for k, v in cfg.to_dict().items() if saved[k] != v and k not in RESUMABLE_CHANGES}
    if diff:
        raise ValueError(f"{cfg.out_dir}/checkpoint.pt was written with other parameters {diff} (saved, now); "
                         "pass resume=False to start over or choose another out_dir")
    for k, m in _modules(players).items():
        m.load_state_dict(state["models"][k])
    for k, o in _optimizers(players).items():
        o.load_state_dict(state["optimizers"][k])
    for k, s in schedulers.items():
        s.load_state_dict(state["schedulers"][k])
    for k, s in players.scalers.items():
        s.load_state_dict(state["scalers"][k])
    for k, b in batchers.items():
        b.load_state_dict(state["batchers"][k])
    checkpoint.set_rng_state(state["rng"])


def _finished_metrics(out: Path, cfg: RunConfig) -> dict[str, Any] | None:
    """metrics.json of a finished run in ``out`` when it was written with ``cfg``'s parameters, else None."""
    from mosaic.grid import same_config  # noqa: PLC0415  (grid imports this module)

    path = out / "metrics.json"
    if not path.exists():
        return None
    metrics = json.loads(path.read_text())
    return metrics if same_config(metrics.get("config", {}), cfg) else None


# ----------------------------------------------------------------------------- the loop

def train(cfg: RunConfig, teacher: nn.Module | None = None, progress: bool = True) -> RunResult:
    """Run ``cfg`` to completion (resuming from ``cfg.out_dir`` when it holds a checkpoint).

    On a finished run of the same parameters (checkpoint at the last step and its metrics.json) this
    loads the players from the checkpoint and returns the stored metrics: nothing is re-evaluated
    or rewritten, so ``train`` doubles as the loader of a finished run.
    """
    device = resolve_device(cfg.device)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # setup: seeds, teacher, data, players
    checkpoint.seed_everything(cfg.seed)
    teacher_info: dict[str, Any] = {}
    if teacher is None:
        teacher, teacher_info = build_teacher(cfg, device, progress)
    checkpoint.seed_everything(cfg.seed)  # the run's randomness does not depend on the teacher's cache state
    val = get_dataset(cfg.dataset, "val", root=cfg.data_root, download=cfg.download)
    test = get_dataset(cfg.dataset, "test", root=cfg.data_root, download=cfg.download)
    players = build_players(cfg, teacher, device)
    schedulers = build_schedulers(players, cfg.steps)
    streams, batchers, ood = game.Streams(), {}, None
    if cfg.uses_ood:
        ood = build_ood(cfg, teacher, device)
        batchers["ood"] = Batcher(ood, min(cfg.batch_size, len(ood)), seed=cfg.seed + 1, augment=True, device=device)
        streams.ood = lambda: next(batchers["ood"])[0]
    if cfg.method in ("kd_indomain", "scratch"):
        train_data = get_dataset(cfg.dataset, "train", root=cfg.data_root, download=cfg.download)
        batchers["indomain"] = Batcher(train_data, min(cfg.batch_size, len(train_data)), seed=cfg.seed + 2,
                                       augment=True, device=device)
        streams.indomain = lambda: next(batchers["indomain"])
    # resume
    start, history, wall_s = 0, [], 0.0
    best = {"val_acc": -1.0, "step": -1, "student": None}
    ckpt_path = out / "checkpoint.pt"
    if cfg.resume and ckpt_path.exists():
        state = checkpoint.load(ckpt_path, map_location=device)
        _restore(state, cfg, players, schedulers, batchers)
        start, history, best, wall_s = state["step"], state["history"], state["best"], state["wall_s"]
        stored = _finished_metrics(out, cfg) if start >= cfg.steps else None
        if stored is not None:  # a finished run, loaded: its files stay as they were written
            return RunResult(stored, history, players, ood, out)
    # the loop: one game step, schedules, NaN guard, evaluation, checkpoint
    t0 = time.perf_counter() - wall_s
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=f"{cfg.method}", disable=not progress)
    for it in bar:
        row = {"step": it + 1, "lr_s": players.opt_s.param_groups[0]["lr"], **game.step(players, streams, cfg, device)}
        history.append(row)
        for s in schedulers.values():
            s.step()
        bad = [k for k, v in row.items() if not math.isfinite(v)]
        if bad:
            checkpoint.write_text_atomic(_history_csv(history), out / "history.csv")
            last = f"{ckpt_path} (step {checkpoint.load(ckpt_path)['step']})" if ckpt_path.exists() else "none written yet"
            raise NonFiniteLossError(f"{', '.join(bad)} became {row[bad[0]]} at step {it + 1} of {cfg.method}; "
                                     f"last good checkpoint: {last}. history.csv has every step up to this one.")
        done = it + 1 == cfg.steps
        if (cfg.eval_every and (it + 1) % cfg.eval_every == 0) or done:
            row["val_acc"] = accuracy(players.student, val, device=device)
            if row["val_acc"] > best["val_acc"]:
                best = {"val_acc": row["val_acc"], "step": it + 1,
                        "student": {k: v.detach().clone() for k, v in _unwrap(players.student).state_dict().items()}}
            bar.set_postfix(loss_s=f"{row['loss_s']:.3f}", val_acc=f"{row['val_acc']:.1f}")
        if (cfg.ckpt_every and (it + 1) % cfg.ckpt_every == 0) or done:
            _save(out, cfg, it + 1, players, schedulers, batchers, history, best, time.perf_counter() - t0)
    bar.close()
    wall_s = time.perf_counter() - t0
    # final metrics: the last student (the headline) and the val-selected one, on the test split
    metrics = {"method": cfg.method, "dataset": cfg.dataset, "ood": cfg.ood, "steps": cfg.steps,
               **evaluate(players.student, teacher, test, device=device)}
    if best["student"] is not None:
        selected = get_classifier(cfg.student, teacher.spec).to(device)
        selected.load_state_dict(best["student"])
        metrics["student_acc_valsel"] = accuracy(selected, test, device=device)
        metrics["valsel_step"] = best["step"]
        metrics["valsel_val_acc"] = best["val_acc"]
    metrics.update({"wall_s": round(wall_s, 2), "device": str(device), "torch": torch.__version__,
                    "n_ood": len(ood) if ood is not None else 0,
                    "teacher_info": {k: v for k, v in teacher_info.items() if k != "config"},
                    "config": cfg.to_dict()})
    checkpoint.write_text_atomic(json.dumps(metrics, indent=2), out / "metrics.json")
    if players.generator is not None:
        from mosaic.viz import save_samples
        save_samples(players.generator, out / "samples.png", z_dim=cfg.z_dim, device=device)
    return RunResult(metrics, history, players, ood, out)


# ----------------------------------------------------------------------------- command line

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mosaic.train", description="Run one OOD-KD method.")
    p.add_argument("-f", "--params", help="YAML file of RunConfig fields (flags override it)")
    for f in dataclasses.fields(RunConfig):
        kind = {"bool": lambda s: s.lower() in ("1", "true", "yes"), "int": int, "float": float}.get(str(f.type), str)
        nargs = 2 if f.name == "betas" else None
        p.add_argument(f"--{f.name}", type=float if nargs else kind, nargs=nargs, default=None)
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = vars(_parser().parse_args(argv))
    params: dict[str, Any] = {}
    params_file = args.pop("params")
    if params_file:
        import yaml

        params.update(yaml.safe_load(Path(params_file).read_text()) or {})
    params.update({k: v for k, v in args.items() if v is not None})
    metrics = train(RunConfig.from_dict(params)).metrics
    print(json.dumps({k: metrics[k] for k in ("method", "student_acc", "teacher_acc", "agreement", "wall_s")}))
    return metrics


if __name__ == "__main__":
    main()
