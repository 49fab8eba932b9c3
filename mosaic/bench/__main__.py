"""``python -m mosaic.bench {speed,parity,quality} [options]``: dispatch to the benchmark's own ``main``.

Each subcommand is imported only when asked for, so ``speed`` runs without ``quality`` and back.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {"speed": "mosaic.bench.speed", "quality": "mosaic.bench.quality", "parity": "mosaic.bench.parity"}  # subcommand -> module with main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m mosaic.bench {{{','.join(COMMANDS)}}} [options]  (--help after a subcommand "
              "lists its options)", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    result = importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
