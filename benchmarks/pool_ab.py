"""A/B of the no-gradient 2x2 max-pool path (mosaic.models.pool.fast_path) in one process, interleaved.

    python benchmarks/pool_ab.py --threads 1 --rounds 7      # writes benchmarks/pool_ab_cpu.{csv,md}

Three levels, each timed with the fast path off and on in alternating order every round (median over
rounds; ratios from the same round): the pool op at the LeNet-5 shapes of a 256-image batch, the
frozen LeNet-5 teacher's no-grad forward on 256 images, and one whole MosaicKD iteration of the
library's fast path (bf16 autocast + channels_last) at the speed benchmark's default config. Also
checks that both paths give the same numbers (max is exact).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from mosaic.bench import variants
from mosaic.models import pool

HERE = Path(__file__).resolve().parent


def timed(fn, n: int) -> float:
    """Seconds per call, n calls."""
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=3, help="MosaicKD iterations per round and path")
    p.add_argument("--out", default=str(HERE / "pool_ab_cpu"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    setup = variants.make_setup("default", "cpu", threads=a.threads)
    teacher, ood = variants.bench_inputs(setup)
    step, players, _ = variants.build_step(variants.parse_variant("library+bf16+cl"), setup.cfg, teacher, ood, "cpu")
    x = torch.rand(256, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    maps = {f"pool {tuple(s)} bf16 cl": torch.randn(*s).bfloat16().contiguous(memory_format=torch.channels_last)
            for s in [(256, 6, 28, 28), (256, 16, 14, 14), (256, 3, 28, 28), (256, 8, 14, 14)]}

    def teacher_forward():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return players.teacher(x)

    cases = {**{k: (lambda m=m: pool.max_pool2x2(m)) for k, m in maps.items()},
             "teacher no-grad forward, 256 images, bf16 cl": teacher_forward,
             "MosaicKD iteration, library bf16+cl": step}
    with torch.no_grad():  # same numbers both ways
        for m in maps.values():
            assert torch.equal(pool.max_pool2x2(m), F.max_pool2d(m, 2))
    for _ in range(2):  # warm-up
        step()
    times: dict[tuple[str, bool], list[float]] = {}
    for r in range(a.rounds):
        for name, fn in cases.items():
            n = a.steps if "iteration" in name else 20
            for fast in ((False, True) if r % 2 == 0 else (True, False)):
                with pool.fast_path(fast), torch.no_grad() if "iteration" not in name else torch.enable_grad():
                    times.setdefault((name, fast), []).append(timed(fn, n))
        print(f"round {r + 1}/{a.rounds} done", flush=True)
    rows = []
    for name in cases:
        off, on = times[(name, False)], times[(name, True)]
        rows.append({"case": name, "native_ms": 1e3 * statistics.median(off), "fast_ms": 1e3 * statistics.median(on),
                     "speedup": statistics.median([o / f for o, f in zip(off, on)]),
                     "speedup_min": min(o / f for o, f in zip(off, on)),
                     "speedup_max": max(o / f for o, f in zip(off, on)), "rounds": a.rounds, "threads": a.threads})
    df = pd.DataFrame(rows)
    df.to_csv(a.out + ".csv", index=False)
    md = (f"No-grad 2x2 max-pool A/B (`python benchmarks/pool_ab.py --threads {a.threads} --rounds {a.rounds}`), "
          f"median over rounds, same-round speedup:\n\n" + df.to_markdown(index=False, floatfmt=".2f") + "\n")
    Path(a.out + ".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
