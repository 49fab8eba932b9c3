"""Every notebook: one documented `parameters` cell, stored reference outputs fit for nbval, and a papermill run
with overridden (tiny) parameters. 01 and 02 run in test_notebooks_run.py; 03, 04, 05 and 06 run here."""
import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PARAM_LINE = re.compile(r"^(?P<name>\w+): (?P<type>[\w\[\], ]+) = (?P<value>.+?)  # (?P<comment>\S.*)$")
# absolute paths that must never be stored in a notebook's outputs
MACHINE_PATHS = re.compile(r"(?:/home/|/Users/|/tmp/|/private/var/|[A-Z]:\\\\)" + "|" + re.escape(str(ROOT)))


def read(nb: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(nb), as_version=4)


def parameters_cells(nb: Path) -> list:
    return [c for c in read(nb).cells if "parameters" in c.metadata.get("tags", [])]


def parameters(nb: Path) -> dict[str, str]:
    """name -> trailing comment of every line of the notebook's parameters cell."""
    (cell,) = parameters_cells(nb)
    return {m["name"]: m["comment"] for m in map(PARAM_LINE.match, cell.source.splitlines()) if m}


def test_the_notebooks_are_there():
    assert [nb.name[:2] for nb in NOTEBOOKS][:2] == ["01", "02"]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_parameters_cell_of_annotated_literals_with_comments(nb):
    cells = parameters_cells(nb)
    assert len(cells) == 1, f"{nb.name} has {len(cells)} cells tagged 'parameters'; papermill needs exactly one"
    for line in cells[0].source.splitlines():
        if not line.strip():
            continue
        m = PARAM_LINE.match(line)
        assert m, f"{nb.name}: not `name: type = literal  # comment`: {line!r}"
        ast.literal_eval(m["value"])  # a literal, so papermill can override it


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_help_notebook_lists_every_parameter_with_its_comment(nb):
    proc = subprocess.run([sys.executable, "-m", "papermill", "--help-notebook", str(nb)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = " ".join(proc.stdout.split())
    params = parameters(nb)
    assert params, f"{nb.name}: no parameters"
    for name, comment in params.items():
        assert f" {name}: " in text, f"papermill --help-notebook does not list {name!r} of {nb.name}"
        assert " ".join(comment.split()) in text, f"papermill --help-notebook drops the comment of {name!r} ({nb.name})"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_outputs_are_a_clean_reference(nb):
    """Executed (the nbval reference), no execution timings or papermill metadata, no machine paths."""
    book = read(nb)
    assert "papermill" not in book.metadata, f"{nb.name}: strip it (python -m mosaic.grid {nb.relative_to(ROOT)})"
    for i, cell in enumerate(book.cells):
        if cell.cell_type != "code":
            continue
        where = f"{nb.name} cell {i} ({cell.source.splitlines()[0][:60]!r})"
        assert cell.execution_count is not None, f"{where} has no stored output: execute the notebook in place"
        assert not {"execution", "papermill"} & set(cell.metadata), f"{where} keeps execution timings"
        assert "injected-parameters" not in cell.metadata.get("tags", []), f"{where}: papermill's injected cell"
        text = json.dumps(cell.outputs)
        hit = MACHINE_PATHS.search(text)
        assert hit is None, f"{where} stores a machine path: ...{text[max(0, hit.start() - 60): hit.end() + 40]}..."


def parameter_values(nb: Path) -> dict:
    """name -> value of every line of the notebook's parameters cell (literals only)."""
    (cell,) = parameters_cells(nb)
    return {node.target.id: ast.literal_eval(node.value) for node in ast.parse(cell.source).body
            if isinstance(node, ast.AnnAssign)}


def test_02_parameter_defaults_are_runconfigs_defaults():
    """02's parameters cell repeats RunConfig fields for papermill --help-notebook: they must agree."""
    from mosaic.config import RunConfig

    defaults = RunConfig().to_dict()
    values = parameter_values(ROOT / "notebooks" / "02_train.ipynb")
    fields = {k: v for k, v in values.items() if k in defaults}
    assert len(fields) == len(values), f"02 parameters that are not RunConfig fields: {set(values) - set(defaults)}"
    differ = {k: (v, defaults[k]) for k, v in fields.items() if v != defaults[k]}
    assert not differ, f"02's parameters cell disagrees with RunConfig's defaults (notebook, RunConfig): {differ}"


def test_the_benchmarks_method_settings_are_notebook_parameters():
    """Every field the quality benchmarks set per method (METHOD_SETTINGS, SEG_SETTINGS) is a parameter of the
    notebook that runs that task (02, 06), so one papermill command reproduces a table cell; 06's introduction and the
    README say which, with the table's budget."""
    from mosaic.bench.quality import METHOD_SETTINGS, SEG_SETTINGS, TASKS

    for name, settings in (("02_train", METHOD_SETTINGS), ("06_segmentation", SEG_SETTINGS)):
        nb = ROOT / "notebooks" / f"{name}.ipynb"
        missing = {k for s in settings.values() for k in s} - set(parameters(nb))
        assert not missing, f"{name}: no parameter for the benchmark's {sorted(missing)}"
    readme = (ROOT / "README.md").read_text()
    cell = readme[readme.index("# the segmentation table's MosaicKD cell"):]
    cell = cell[:cell.index("```")]
    texts = {"06's introduction": read(ROOT / "notebooks" / "06_segmentation.ipynb").cells[0].source,
             "README's table-cell command": cell}
    expected = {**SEG_SETTINGS["mosaickd"], "steps": TASKS["seg"].steps}
    for where, text in texts.items():
        said = {k: ast.literal_eval(v) if v[0].isdigit() or v in ("True", "False") else v
                for k, v in re.findall(r"-p (\w+) ([\w.+-]+)", text)}
        for key, value in expected.items():
            assert said.get(key) == value, f"{where} gives -p {key} {said.get(key)}, the benchmark {value}"


OUTPUT_CAP = 400_000  # bytes of stored outputs per notebook


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_outputs_stay_small(nb):
    """Each notebook's stored outputs, mostly figures nbval never compares, stay under OUTPUT_CAP (400 KB).

    A cap per notebook, not one for all: a shared budget (1 MB for 01-05 once, 0.99 MB used) makes every new
    notebook fight the old ones for bytes, while what matters is that no one notebook bloats the repository
    and its diffs. 400 KB holds the largest one, 04 (0.33 MB of class rows, attributions and an embedding at
    50 dpi), with room for the few percent a PNG's size moves between executions; six notebooks at the cap
    would still be 2.4 MB."""
    size = len(json.dumps([c.get("outputs", []) for c in read(nb).cells]))
    assert size < OUTPUT_CAP, f"{nb.name}'s stored outputs take {size / 1e3:.0f} KB (cap {OUTPUT_CAP / 1e3:.0f} KB): " \
                              "lower its figure dpi or image counts"


# ----------------------------------------------------------------------------- papermill runs with tiny parameters

def papermill(nb: Path, out: Path, params: dict, cwd: Path) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "papermill", str(nb), str(out), "--cwd", str(cwd), "-k", "python3",
            "--no-progress-bar"]
    for k, v in params.items():
        args += ["-y", json.dumps({k: v})] if isinstance(v, (list, dict)) else ["-p", k, str(v)]
    return subprocess.run(args, capture_output=True, text=True, timeout=600)


def notebook(prefix: str) -> Path:
    found = sorted((ROOT / "notebooks").glob(f"{prefix}_*.ipynb"))
    if not found:
        pytest.skip(f"notebooks/{prefix}_*.ipynb does not exist yet")
    return found[0]


def run_tiny(prefix: str, tiny: dict, tmp_path: Path) -> Path:
    """Run notebook ``prefix`` with ``tiny`` overrides; every override must be one of its parameters."""
    nb = notebook(prefix)
    unknown = sorted(set(tiny) - set(parameters(nb)))
    assert not unknown, f"{nb.name} has no parameter(s) {unknown}: update the tiny settings in {Path(__file__).name}"
    out = tmp_path / nb.name
    proc = papermill(nb, out, tiny, ROOT)  # the repository's data/ and teacher cache; outputs go to tmp_path
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def tiny_run_dir(tmp_path_factory) -> Path:
    """One shared 2-step MosaicKD run folder for 03 and 04 (03 finds it missing and trains it, 04 loads it)."""
    return tmp_path_factory.mktemp("shared") / "run"


@pytest.mark.slow
def test_03_runs_with_tiny_settings(tmp_path, tiny_run_dir):
    tiny = dict(run_dir=tiny_run_dir, steps_if_missing=2, n_images=24, sweep_patches=[4, 10], rf_patch_sizes=[4, 10],
                n_maps=2)
    run_tiny("03", tiny, tmp_path)
    assert (tiny_run_dir / "metrics.json").exists()


@pytest.mark.slow
def test_04_runs_with_tiny_settings(tmp_path, tiny_run_dir):
    tiny = dict(run_dir=tiny_run_dir, steps_if_missing=2, n_samples=40, per_class=2, n_attr=2, n_attr_stats=4,
                bank_images=12, n_embed=20)
    run_tiny("04", tiny, tmp_path)
    assert (tiny_run_dir / "metrics.json").exists()


@pytest.mark.slow
def test_05_runs_a_tiny_grid_and_tabulates_it(tmp_path):
    tiny = dict(groups=["reference", "discriminator"], patch_sizes=[4], patch_size=8, ood_sources={"digits": "digits"},
                dataset="digits", ood="mnist5k", teacher="cnn_half", student="cnn_half", teacher_epochs=2,
                steps=2, kd_steps=1, batch_size=16, ngf=8, ndf=8, eval_every=1, out_root=str(tmp_path / "grid"),
                teacher_dir=str(tmp_path / "teachers"))
    out = run_tiny("05", tiny, tmp_path)
    # reference: MosaicKD, KD on OOD; discriminator: no D, full-image D, patch 4 -> five run folders
    assert len(list((tmp_path / "grid").rglob("metrics.json"))) == 5
    text = out.read_text()
    for row in ("MosaicKD", "KD on OOD", "no D", "full-image D", "patch 4"):
        assert row in text


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")  # the tiny teacher is weak, and says so
@pytest.mark.parametrize("method", ["datafree", "kd_ood"])  # a generator without discriminator; no generator
def test_06_runs_with_tiny_settings(tmp_path, monkeypatch, method):
    """06 on a teacher trained here on 256 scenes (teacher_ckpt), 2 steps of batch 8; writes a segmentation run.
    The stored defaults (mosaickd) run under nbval; these are the methods whose cells take the other branches."""
    from mosaic.data import DatasetNotFoundError, get_dataset, registry
    from mosaic.teacher import TeacherConfig, get_teacher

    monkeypatch.setitem(registry.SCENE_COUNTS, "train", 256)
    try:
        get_dataset("fmnist_scenes", "test")
    except DatasetNotFoundError:
        pytest.skip("needs Fashion-MNIST (data/FashionMNIST or apt-get install dataset-fashion-mnist)")
    _, info = get_teacher(TeacherConfig(dataset="fmnist_scenes", arch="segnet_small_half", epochs=1,
                                        data_root=str(ROOT / "data")), tmp_path / "teachers", progress=False)
    run = tmp_path / "run"
    tiny = dict(method=method, teacher="segnet_small_half", teacher_ckpt=info["path"], steps=2, kd_steps=1, batch_size=8, ngf=8, ndf=8,
                eval_every=1, ckpt_every=1, out_dir=str(run), n_show=3, n_attr=1, bank_images=10,
                teacher_dir=str(tmp_path / "teachers"))
    out = run_tiny("06", tiny, tmp_path)
    m = json.loads((run / "metrics.json").read_text())
    assert m["dataset"] == "fmnist_scenes" and m["steps"] == 2 and m["method"] == method and 0 <= m["student_miou"] <= 100
    assert "student_miou_valsel" in m and "per_class_iou" in m
    table = next(c for c in read(out).cells if c.source.startswith("# per-class test IoU"))
    text = "".join(o.get("text", "") for o in table.outputs)
    assert "student" in text and "teacher" in text and "background" in text and "ankle boot" in text.lower()


def test_nbval_cells_wait_longer_than_five_seconds_for_outputs(tmp_path):
    """notebooks/conftest.py lifts nbval's hard-coded 5 s wait for a finished cell's outputs (a CI run once
    failed on it under load); checked on the items pytest collects from notebooks/, as `make test` does."""
    (tmp_path / "timeouts.py").write_text(
        "def pytest_collection_finish(session):\n"
        "    for item in session.items:\n"
        "        print('TIMEOUT', type(item).__name__, getattr(item, 'output_timeout', None))\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "timeouts", "--nbval-lax",
                           "--nbval-current-env", str(NOTEBOOKS[0])], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    seen = [line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("TIMEOUT ")]
    assert seen and all(kind == "IPyNbCell" for kind, _ in seen), proc.stdout[-2000:]
    spec = importlib.util.spec_from_file_location("nb_conftest", ROOT / "notebooks" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    assert conftest.OUTPUT_TIMEOUT_S >= 60
    assert {int(t) for _, t in seen} == {conftest.OUTPUT_TIMEOUT_S}
