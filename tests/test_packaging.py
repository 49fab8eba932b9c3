"""Set-up files agree with each other: pyproject.toml is the single source of dependencies."""
import json
import re
import tomllib
from pathlib import Path

import yaml

from mosaic.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
USER_PACKAGES = {"torch", "torchvision", "jupyterlab", "ipywidgets", "matplotlib", "seaborn", "papermill",
                 "nbval", "tqdm", "pytest", "mlxtend"}


def _names(reqs):
    return {re.split(r"[<>=!\[ ;]", r, maxsplit=1)[0].lower() for r in reqs}


def test_pyproject_declares_every_package_the_project_promises():
    declared = _names(PYPROJECT["project"]["dependencies"])
    for extra in PYPROJECT["project"]["optional-dependencies"].values():
        declared |= _names(extra)
    assert USER_PACKAGES <= declared, USER_PACKAGES - declared


def test_environment_yml_installs_the_package_from_pyproject_and_nothing_else():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert {re.split(r"[=<>]", d)[0] for d in conda} == {"python", "pip"}  # no package pinned twice
    assert len(pip) == 1 and pip[0].startswith("-e .[")
    extras = pip[0][len("-e .["):-1].split(",")
    assert set(extras) <= set(PYPROJECT["project"]["optional-dependencies"]), extras
    py_min = PYPROJECT["project"]["requires-python"].lstrip(">=")
    py_env = next(d for d in conda if d.startswith("python=")).split("=")[1]
    assert tuple(map(int, py_env.split("."))) >= tuple(map(int, py_min.split(".")))


def test_ci_calls_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_paper_parameter_files_are_valid_run_configs():
    files = sorted((ROOT / "notebooks" / "params").glob("cifar100_*.yaml"))  # the paper table runs
    assert len(files) >= 2
    nb = json.loads((ROOT / "notebooks" / "02_train.ipynb").read_text())
    params_cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    declared = set(re.findall(r"^(\w+):", "".join(params_cell["source"]), flags=re.M))
    for f in files:
        p = yaml.safe_load(f.read_text())
        cfg = RunConfig.from_dict(p)
        assert cfg.dataset == "cifar100" and cfg.ood == "cifar10" and cfg.batch_size == 256 and cfg.kd_steps == 5
        assert set(p) <= declared, f"{f.name} sets parameters the notebook does not declare: {set(p) - declared}"
