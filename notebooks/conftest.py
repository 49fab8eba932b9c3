"""pytest settings for the notebook regression (``pytest --nbval-lax notebooks/``).

nbval waits a hard-coded 5 s for each output message after a cell has finished (its ``--nbval-cell-timeout``
covers only the execution itself). A cell that trains a run streams many progress updates, and on a loaded
2-core machine they can arrive later than that: CI once failed a notebook cell with "Timeout of 5 seconds
exceeded waiting for output" while every other cell passed (nbval issues #136, #231: not configurable).
Here every nbval cell waits OUTPUT_TIMEOUT_S instead; a cell that truly hangs is still caught by the
cell timeout.
"""
from __future__ import annotations

OUTPUT_TIMEOUT_S = 120


def pytest_collection_modifyitems(config, items):
    for item in items:
        if hasattr(item, "output_timeout"):  # nbval's IPyNbCell; other items have no such attribute
            item.output_timeout = OUTPUT_TIMEOUT_S
