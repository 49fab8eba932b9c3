"""Where relative paths (data/, checkpoints/, runs/) resolve: the repository root, wherever you start.

JupyterLab starts a notebook's kernel in ``notebooks/``, papermill in the caller's folder; calling
``use_project_root()`` first makes ``data_root="data"`` mean the same folder in both.
"""
from __future__ import annotations

import os
from pathlib import Path


def project_root(start: str | os.PathLike | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: cwd) that holds this project, else None."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "mosaic" / "__init__.py").exists() and (folder / "pyproject.toml").exists():
            return folder
    return None


def use_project_root() -> Path:
    """chdir to the project root when inside the repository; stay put otherwise. Returns the cwd."""
    root = project_root()
    if root is not None:
        os.chdir(root)
    return Path.cwd()


__all__ = ["project_root", "use_project_root"]
