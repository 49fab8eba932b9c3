"""One rank of a test's ``torchrun`` launch: trains a RunConfig (JSON file) and records, per rank, every file
write the run makes, the history and metrics, and whether the teacher stayed frozen and unchanged.

    torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py CONFIG.json RECORD_DIR
"""
import json
import sys
from pathlib import Path

import torch

import mosaic.checkpoint as checkpoint
import mosaic.train as train_module
from mosaic import distributed
from mosaic.config import RunConfig
from mosaic.teacher import load_teacher


def record_writes(log: list) -> None:
    """Wrap every writer a run uses so that each call is logged (then performed)."""
    for owner, name in ((checkpoint, "save_atomic"), (checkpoint, "write_text_atomic"),
                        (checkpoint, "folder_lock"), (train_module, "save_image")):
        real = getattr(owner, name)

        def logged(*args, _real=real, _name=name, **kw):
            path = args[1] if _name in ("save_atomic", "write_text_atomic", "save_image") else args[0]
            log.append(f"{_name}:{Path(path).name}")
            return _real(*args, **kw)

        setattr(owner, name, logged)


def main(config_path: str, record_dir: str) -> None:
    cfg = RunConfig.from_dict(json.loads(Path(config_path).read_text()))
    writes: list[str] = []
    record_writes(writes)
    res = train_module.train(cfg, progress=False)
    teacher = res.players.teacher
    saved, _ = load_teacher(res.metrics["teacher_info"]["path"], "cpu")
    record = {
        "rank": distributed.rank(), "world_size": distributed.world_size(), "writes": writes,
        "history": res.history, "metrics": {k: v for k, v in res.metrics.items() if k != "teacher_info"},
        "teacher_unchanged": all(torch.equal(v, saved.state_dict()[k]) for k, v in teacher.state_dict().items()),
        "teacher_frozen": not teacher.training and not any(p.requires_grad for p in teacher.parameters()),
        "teacher_wrapped": isinstance(teacher, torch.nn.parallel.DistributedDataParallel),
        "student_wrapped": isinstance(res.players.student, torch.nn.parallel.DistributedDataParallel),
    }
    Path(record_dir).mkdir(parents=True, exist_ok=True)
    (Path(record_dir) / f"rank{distributed.rank()}.json").write_text(json.dumps(record))
    distributed.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:3])
