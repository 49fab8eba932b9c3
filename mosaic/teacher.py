"""Teachers: train with validation-based selection, cache on disk, and freeze once where built.

A cached teacher lives at ``{cache_dir}/{dataset}_{arch}_e{epochs}_s{seed}[_b{batch}][_t{threads}].pt``
(``_bN`` when trained at a batch other than its task's auto batch, ``_tN`` at N != 1 threads) with its
state dict, its training parameters and its val/test accuracy (a segmentation teacher: val/test mIoU,
keys ``val_miou``/``test_miou``). The budget is counted in SGD iterations at a batch, per task
(``AUTO_BUDGETS``): ``batch_size=0`` means the task's batch, ``epochs=0`` enough epochs for the task's
iterations, so the budget follows the data (the file name holds the resolved count). The test split is
measured for reporting only; the kept epoch is chosen on the validation split.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from mosaic import checkpoint, losses
from mosaic.data import Batcher, dataset_spec, get_dataset
from mosaic.evaluate import score, score_name
from mosaic.models import Classifier, get_model
from mosaic.nnutil import cosine_schedule, num_threads

# SGD iterations of a classification teacher whose ``epochs`` is 0 (auto), at batch AUTO_BATCH, whatever its
# dataset's size; small datasets get many epochs, large ones few. Chosen with benchmarks/teacher_budget.py (its
# table: benchmarks/teacher_budget_cpu.md).
AUTO_ITERATIONS = 8000
AUTO_BATCH = 128
# The same for a segmentation teacher: fewer, smaller batches (one segnet_small SGD step at batch 32 takes 0.35 s on
# one core of the 2-core build machine, so 1,248 of them about 7.5 min). Chosen with benchmarks/teacher_budget.py
# on fmnist_scenes (benchmarks/teacher_budget_seg_cpu.md).
DENSE_AUTO_ITERATIONS = 1248
DENSE_AUTO_BATCH = 32


def auto_budget(task: str) -> tuple[int, int]:
    """(SGD iterations, batch) of an auto-budget teacher of ``task`` (classification | segmentation)."""
    return (DENSE_AUTO_ITERATIONS, DENSE_AUTO_BATCH) if task == "segmentation" else (AUTO_ITERATIONS, AUTO_BATCH)


class WeakTeacherWarning(UserWarning):
    """A teacher trained on fewer images than its task's auto budget (``auto_budget``: iterations x batch): its
    accuracy (or mIoU) may be far below its reach."""


@dataclass
class TeacherConfig:
    dataset: str = "fmnist"  # in-domain dataset
    arch: str = "lenet5"  # classifier name
    epochs: int = 0  # passes over the train split (val carved out of it); 0: auto, the task's auto_budget iterations
    batch_size: int = 0  # SGD batch; 0: auto, the task's (128 classification, 32 segmentation: auto_budget)
    lr: float = 0.05  # SGD lr, cosine to 0
    momentum: float = 0.9  # SGD momentum
    wd: float = 5e-4  # weight decay
    seed: int = 0  # init and batch order
    data_root: str = "data"  # dataset root
    download: bool = False  # allow torchvision downloads
    threads: int = 1  # torch intra-op threads while training (the weights depend on it); 0: torch's default


def freeze(model: Classifier) -> Classifier:
    """Freeze once, where the teacher is built: eval mode for good (``Classifier.frozen``), no parameter gradients."""
    return model.freeze()


def auto_epochs(n_train: int, batch_size: int, iterations: int | None = None) -> int:
    """Epochs that give at least ``iterations`` (default ``AUTO_ITERATIONS``) SGD iterations on ``n_train``
    images, at the len(train) // batch iterations per epoch that ``train_teacher`` runs."""
    per_epoch = max(1, n_train // min(batch_size, n_train))
    return max(1, math.ceil((iterations or AUTO_ITERATIONS) / per_epoch))


def resolve(cfg: TeacherConfig) -> TeacherConfig:
    """``cfg`` with its batch and epochs decided: as given, else the task's ``auto_budget`` batch, and
    ``auto_epochs`` of the task's iterations for its dataset's train split."""
    iterations, batch = auto_budget(dataset_spec(cfg.dataset).task)
    cfg = dataclasses.replace(cfg, batch_size=cfg.batch_size or batch)
    if cfg.epochs:
        return cfg
    n_train = len(get_dataset(cfg.dataset, "train", root=cfg.data_root, download=cfg.download))
    return dataclasses.replace(cfg, epochs=auto_epochs(n_train, cfg.batch_size, iterations))


def cache_path(cfg: TeacherConfig, cache_dir: str | Path) -> Path:
    cfg = resolve(cfg)
    batch = f"_b{cfg.batch_size}" if cfg.batch_size != auto_budget(dataset_spec(cfg.dataset).task)[1] else ""
    threads = f"_t{cfg.threads}" if cfg.threads != 1 else ""
    return Path(cache_dir) / f"{cfg.dataset}_{cfg.arch}_e{cfg.epochs}_s{cfg.seed}{batch}{threads}.pt"


def _metric(info: dict) -> str:
    return "mIoU" if "val_miou" in info else "accuracy"


def warn_if_weak(info: dict) -> None:
    """``WeakTeacherWarning`` when the teacher saw fewer training images (iterations x batch) than its task's auto
    budget (``auto_budget``), so a teacher trained at another batch is judged by the same amount of data."""
    iterations = info.get("iterations")
    c = info["config"]
    task = "segmentation" if "val_miou" in info else "classification"
    auto_iterations, auto_batch = auto_budget(task)
    if iterations is None or iterations * c["batch_size"] >= auto_iterations * auto_batch:
        return
    val = info.get("val_acc", info.get("val_miou"))
    table = "teacher_budget_seg_cpu.md" if task == "segmentation" else "teacher_budget_cpu.md"
    warnings.warn(f"the {c['arch']} teacher on {c['dataset']} trained for {iterations} SGD iterations at batch "
                  f"{c['batch_size']} ({c['epochs']} epochs; val {_metric(info)} {val:.2f}%, per epoch "
                  f"{info.get('val_curve')}), fewer images than the {task} auto budget of {auto_iterations} at batch "
                  f"{auto_batch} (benchmarks/{table}): a weak teacher caps every student. Set teacher_epochs=0 "
                  "(auto) or more epochs", WeakTeacherWarning, stacklevel=3)


def train_teacher(cfg: TeacherConfig, device: str | torch.device = "cpu", progress: bool = True) -> tuple[nn.Module, dict]:
    """Train ``cfg.arch`` on ``cfg.dataset``/train; keep the epoch with the best val accuracy."""
    cfg = resolve(cfg)
    with num_threads(cfg.threads):
        return _train_teacher(cfg, device, progress)


def _train_teacher(cfg: TeacherConfig, device: str | torch.device, progress: bool) -> tuple[nn.Module, dict]:
    checkpoint.seed_everything(cfg.seed)
    train = get_dataset(cfg.dataset, "train", root=cfg.data_root, download=cfg.download)
    val = get_dataset(cfg.dataset, "val", root=cfg.data_root, download=cfg.download)
    model = get_model(cfg.arch, train.spec).to(device)
    metric = score_name(train.spec)  # what the kept epoch is chosen on (percent): acc, or miou when dense
    batch_size = min(cfg.batch_size, len(train))
    iters_per_epoch = max(1, len(train) // batch_size)
    total = cfg.epochs * iters_per_epoch
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.wd, nesterov=True)
    sched = cosine_schedule(opt, total)
    batches = Batcher(train, batch_size, seed=cfg.seed, augment=True, device=device)
    best_acc, best_state, best_epoch, curve = -1.0, None, -1, []
    bar = tqdm(total=total, desc=f"teacher {cfg.arch}@{cfg.dataset}", disable=not progress, leave=False)
    for epoch in range(cfg.epochs):
        model.train()
        for _ in range(iters_per_epoch):
            x, y = next(batches)
            loss = losses.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"teacher training diverged at epoch {epoch} (loss={loss.item()}); lower lr")
        val_acc = score(model, val, device=device)  # accuracy, or mIoU for a segmentation teacher
        curve.append(round(val_acc, 2))
        bar.set_postfix(val_acc=f"{val_acc:.2f}")
        if val_acc > best_acc:
            best_acc, best_epoch = val_acc, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    bar.close()
    model.load_state_dict(best_state)
    test = get_dataset(cfg.dataset, "test", root=cfg.data_root, download=cfg.download)
    info = {"config": asdict(cfg), f"val_{metric}": best_acc, "best_epoch": best_epoch,
            f"test_{metric}": score(model, test, device=device), "val_curve": curve, "iterations": total}
    return model, info


def _with_info(model: Classifier, info: dict) -> tuple[Classifier, dict]:
    """Frozen model carrying its provenance as ``model.info`` (it travels with the module into ``train``)."""
    model.info = info
    return freeze(model), info


TEACHER_FILE_HELP = "pass a teacher file written by mosaic.teacher.get_teacher (e.g. checkpoints/teachers/*.pt)"


def read_teacher_file(path: str | Path) -> dict:
    """The contents of a teacher file, or an error that says what the file is instead and what to pass."""
    ckpt = checkpoint.load(path, what_to_do=TEACHER_FILE_HELP)
    if "models" in ckpt and "config" in ckpt:
        raise ValueError(f"{path} is a run's checkpoint (written by mosaic.train), not a teacher file; "
                         f"{TEACHER_FILE_HELP}")
    if not ("state_dict" in ckpt and isinstance(ckpt.get("info"), dict) and "config" in ckpt["info"]):
        raise ValueError(f"{path} is not a teacher file (it holds {sorted(ckpt)[:6]}); {TEACHER_FILE_HELP}")
    return ckpt


def teacher_fields(ckpt: dict, data_root: str | None = None) -> dict:
    """What a teacher file says it is: task, dataset, architecture and input spec (channels, size, classes)."""
    cfg = ckpt["info"]["config"]
    spec = ckpt.get("spec") or get_dataset(cfg["dataset"], "test", root=data_root or cfg["data_root"]).spec
    return {"task": ckpt.get("task", "classification"), "dataset": cfg["dataset"], "arch": cfg["arch"],
            "channels": spec.channels, "size": spec.size, "num_classes": spec.num_classes}


def check_teacher_file(path: str | Path, want: dict, data_root: str | None = None) -> None:
    """Refuse a teacher file whose task, dataset, architecture or input spec differs from ``want``
    (a dict with some of ``teacher_fields``' keys), naming every field that differs."""
    have = teacher_fields(read_teacher_file(path), data_root)
    diff = [f"{k} is {have[k]!r} in the file but {v!r} in this run" for k, v in want.items() if have.get(k) != v]
    if diff:
        raise ValueError(f"teacher_ckpt {path} does not fit this run: {'; '.join(diff)}. Pass a teacher trained "
                         "for this run's dataset and architecture (or set dataset/teacher to match the file)")


def load_teacher(path: str | Path, device: str | torch.device = "cpu", data_root: str | None = None) -> tuple[nn.Module, dict]:
    """Load a teacher file written by ``get_teacher`` (frozen); its info gains the file's ``path``."""
    ckpt = read_teacher_file(path)
    cfg = TeacherConfig(**ckpt["info"]["config"])
    spec = ckpt.get("spec") or get_dataset(cfg.dataset, "test", root=data_root or cfg.data_root).spec
    model = get_model(cfg.arch, spec)
    model.load_state_dict(ckpt["state_dict"])
    return _with_info(model.to(device), {**ckpt["info"], "path": str(path)})


def get_teacher(cfg: TeacherConfig, cache_dir: str | Path = "checkpoints/teachers", device: str | torch.device = "cpu",
                progress: bool = True) -> tuple[nn.Module, dict]:
    """The cached teacher for ``cfg`` if one exists, else train and cache it. Always frozen, with ``info``:
    val/test accuracy, best epoch, training config, file ``path`` and whether it was ``cached``."""
    cfg = resolve(cfg)
    path = cache_path(cfg, cache_dir)
    if path.exists():
        model, info = load_teacher(path, device, data_root=cfg.data_root)
        warn_if_weak(info)
        return _with_info(model, {**info, "cached": True})
    model, info = train_teacher(cfg, device, progress)
    warn_if_weak(info)
    checkpoint.save_atomic({"task": model.spec.task, "state_dict": model.state_dict(), "spec": model.spec,
                            "info": info}, path)
    return _with_info(model, {**info, "path": str(path), "cached": False})


__all__ = ["TeacherConfig", "AUTO_ITERATIONS", "AUTO_BATCH", "DENSE_AUTO_ITERATIONS", "DENSE_AUTO_BATCH",
           "auto_budget", "WeakTeacherWarning", "auto_epochs", "resolve", "warn_if_weak", "freeze", "train_teacher", "get_teacher", "load_teacher", "cache_path",
           "read_teacher_file", "teacher_fields", "check_teacher_file"]
