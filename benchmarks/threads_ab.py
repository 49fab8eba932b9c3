"""Which torch thread count should a run default to? Loop time at 1 and 2 threads, alone and with a neighbour.

Each cell trains notebook 02's default run (``steps`` iterations, no evaluation or checkpoint inside the
loop) in a fresh process; "alone" runs one process, "shared" runs two identical processes at once, as
when a second job (another run, a test suite, a notebook) shares the CPU. The teacher is trained or read
from the cache first, outside the timed loop, and every cell distills that one file (``teacher_ckpt``). Prints a table and writes CSV + markdown:

    python benchmarks/threads_ab.py --threads 1 2 --steps 20

``loop_s`` is the loop's wall time (``metrics.json``'s wall_s) of each process; ``student_acc`` shows that
the loop's thread count alone changes the numbers (float reductions are split differently), so
``RunConfig.threads`` is a results field. Compare ratios within one table, never absolute times across machines or runs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pandas as pd

from mosaic.build import build_teacher
from mosaic.config import RunConfig


def run_cells(threads: int, copies: int, steps: int, root: Path, teacher: str) -> list[dict]:
    """``copies`` processes at once, each training the default run at ``threads`` threads (teacher file
    ``teacher``, the same for every cell); their metrics."""
    procs, dirs = [], []
    for i in range(copies):
        out = root / f"t{threads}_x{copies}_{i}"
        dirs.append(out)
        args = [sys.executable, "-m", "mosaic.train", "--steps", str(steps), "--eval_every", "0", "--ckpt_every", "0",
                "--threads", str(threads), "--teacher_ckpt", teacher, "--resume", "false", "--out_dir", str(out)]
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for p in procs:
        if p.wait():
            raise RuntimeError(f"{' '.join(p.args)} failed with exit code {p.returncode}")
    rows = []
    for out in dirs:
        m = json.loads((out / "metrics.json").read_text())
        rows.append({"threads": threads, "load": "alone" if copies == 1 else f"{copies} runs at once",
                     "loop_s": m["wall_s"], "s_per_step": round(m["wall_s"] / steps, 3), "student_acc": m["student_acc"]})
    return rows


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--runs", default="runs/threads_ab")
    p.add_argument("--out", default="benchmarks/threads_ab_cpu")
    a = p.parse_args(argv)
    _, info = build_teacher(RunConfig(), "cpu", progress=False)  # the default teacher, trained outside the loops
    rows = [r for copies in (1, 2) for t in a.threads for r in run_cells(t, copies, a.steps, Path(a.runs), info["path"])]
    df = pd.DataFrame(rows)
    df.to_csv(f"{a.out}.csv", index=False)
    md = (f"# Loop time against torch threads ({os.cpu_count()} CPUs, {platform.processor() or platform.machine()})\n\n"
          f"`python benchmarks/threads_ab.py --threads {' '.join(map(str, a.threads))} --steps {a.steps}` "
          "(notebook 02's default run, fp32)\n\n" + df.to_markdown(index=False) + "\n")
    Path(f"{a.out}.md").write_text(md)
    print(md)
    return df


if __name__ == "__main__":
    main()
