"""``python -m mosaic.data.fetch NAME [--root data]``: get a dataset onto a fresh machine.

Does nothing when the data is already readable (says where). cityscapes and nyuv2 cannot be
downloaded: it says how to lay out their files; fmnist_scenes fetches fmnist. Otherwise tries, printing
one line per attempt: a torchvision download into ``root``; for fmnist on Debian/Ubuntu as root,
``apt-get install -y dataset-fashion-mnist`` (after ``apt-get update`` if the first install fails).
When all fail it prints what to do by hand and exits with status 1 (2 for an unknown name).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from mosaic.data import registry
from mosaic.data.folder import list_images
from mosaic.data.imagedata import DatasetNotFoundError
from mosaic.data.registry import DATASETS, load_source, not_found_message


def readable(name: str, root: str) -> str | None:
    """Where the train and test splits of ``name`` are read from, or None when they are not readable."""
    try:
        where = load_source(name, root, train=True)[3]
        load_source(name, root, train=False)
    except DatasetNotFoundError:
        return None
    return where


def _apt_usable() -> bool:
    is_root = getattr(os, "geteuid", lambda: -1)() == 0
    return is_root and shutil.which("apt-get") is not None and Path("/etc/debian_version").exists()


def _run(cmd: list[str]) -> tuple[bool, str]:
    """Run a command quietly: (succeeded, its last line of output)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = (done.stderr or done.stdout).strip().splitlines()
    return done.returncode == 0, lines[-1] if lines else ""


def _apt_attempts(name: str, root: str) -> bool:
    install = ["apt-get", "install", "-y", "dataset-fashion-mnist"]
    ok, last = _run(install)
    print(f"{name}: attempt: {' '.join(install)} ... {'ok' if ok else f'failed ({last})'}")
    if not ok:
        ok, last = _run(["apt-get", "update"])
        if ok:
            ok, last = _run(install)
        outcome = "ok" if ok else f"failed ({last})"
        print(f"{name}: attempt: apt-get update, then {' '.join(install)} ... {outcome}")
    return ok and readable(name, root) is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mosaic.data.fetch", description="Get a dataset onto this machine.")
    parser.add_argument("name", help=f"dataset name: {', '.join(DATASETS)}")
    parser.add_argument("--root", default="data", help="folder for torchvision datasets (default: data)")
    args = parser.parse_args(argv)
    name, root = args.name, args.root

    # folder:PATH and unknown names: nothing to download
    if name.startswith("folder:"):
        path = Path(name[len("folder:"):]).expanduser()
        n = len(list_images(path)) if path.is_dir() else 0
        if n == 0:
            print(f"{name}: no image files under {path}; put photos (jpg, png, ...) there", file=sys.stderr)
            return 1
        print(f"{name}: {n} image files under {path}; nothing to do")
        return 0
    if name not in DATASETS:
        print(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}", file=sys.stderr)
        return 2

    # already there?
    where = readable(name, root)
    if where is not None:
        print(f"{name}: already readable at {where}; nothing to do")
        return 0
    if name in registry.NO_DOWNLOAD:  # cityscapes, nyuv2: nothing torchvision can download
        print(not_found_message(name, root, download=False), file=sys.stderr)
        return 1
    if name == "fmnist_scenes":  # composed from Fashion-MNIST: fetch that
        print(f"{name}: composed from fmnist items; fetching fmnist")
        return main(["fmnist", "--root", root])
    if name in ("mnist5k", "digits"):  # ship with pip packages: nothing to download
        try:
            load_source(name, root)
        except DatasetNotFoundError as err:
            print(err, file=sys.stderr)
        return 1

    # attempt: torchvision download
    try:
        load_source(name, root, train=True, download=True)
        load_source(name, root, train=False, download=True)
        print(f"{name}: attempt: torchvision download into {root} ... ok")
        return 0
    except DatasetNotFoundError as err:
        print(f"{name}: attempt: torchvision download into {root} ... failed ({err.__cause__ or err})")

    # attempt: the Debian package (fmnist only)
    if name == "fmnist" and _apt_usable() and _apt_attempts(name, root):
        print(f"{name}: readable at {registry.FMNIST_DEBIAN_DIR}")
        return 0

    print(not_found_message(name, root, download=False), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
