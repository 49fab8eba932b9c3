"""The import graph of mosaic/: no cycles, and lower layers never import higher ones (README "Architecture").

Every ``import``/``from ... import`` of a mosaic module counts, including those inside functions.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

import mosaic

ROOT = Path(mosaic.__file__).parent

# layer of each module (a package's modules share its layer); a module may import only its own layer or lower
LAYERS = {
    0: ("mosaic", "mosaic.spec", "mosaic.config", "mosaic.losses", "mosaic.checkpoint", "mosaic.paths", "mosaic.nnutil",
        "mosaic.pool", "mosaic.ema",
        "mosaic.distributed", "mosaic.board"),
    1: ("mosaic.data", "mosaic.models"),
    2: ("mosaic.evaluate", "mosaic.teacher", "mosaic.game", "mosaic.patches"),
    3: ("mosaic.build", "mosaic.train"),
    4: ("mosaic.viz", "mosaic.grid", "mosaic.jobs", "mosaic.bench"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports(path: Path, name: str) -> set[str]:
    """mosaic modules that ``path`` imports (absolute and relative imports, anywhere in the file)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from mosaic import game` imports mosaic.game
    known = modules()
    return {m for m in found if m in known and m != name}


def layer(name: str) -> int:
    best = None
    for level, prefixes in LAYERS.items():
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and (best is None or len(p) > len(best[1])):
                best = (level, p)
    assert best is not None, f"{name} has no layer in tests/test_layers.py LAYERS: add it"
    return best[0]


def graph() -> dict[str, set[str]]:
    return {name: imports(path, name) for name, path in modules().items()}


def test_every_module_has_a_layer_and_imports_only_its_layer_or_lower():
    bad = [f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
           for a, deps in graph().items() for b in deps if layer(b) > layer(a)]
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(g[node]):
            if state.get(dep) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [node])


def test_losses_and_models_import_nothing_from_data_train_or_viz():
    for name, deps in graph().items():
        if name.startswith(("mosaic.losses", "mosaic.models")):
            assert not {d for d in deps if d.startswith(("mosaic.data", "mosaic.train", "mosaic.viz"))}, name


def test_every_module_imports_first_in_a_fresh_interpreter():
    """Each module imported before any other mosaic module (sys.modules cleared of mosaic in between)."""
    names = [n for n in sorted(modules()) if not n.endswith("__main__")]  # an entry point runs when imported
    script = ("import importlib, sys\n"
              f"for name in {names!r}:\n"
              "    for m in [m for m in sys.modules if m == 'mosaic' or m.startswith('mosaic.')]:\n"
              "        del sys.modules[m]\n"
              "    try:\n"
              "        importlib.import_module(name)\n"
              "    except Exception as err:\n"
              "        print(f'{name}: {type(err).__name__}: {err}')\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr[-2000:]


def test_the_graph_helper_sees_function_level_and_relative_imports(tmp_path):
    src = "from mosaic import game\n\ndef f():\n    from .config import RunConfig\n    import mosaic.losses\n"
    assert "mosaic.checkpoint" in imports(ROOT / "teacher.py", "mosaic.teacher")  # `from mosaic import checkpoint`
    fake = tmp_path / "x.py"
    fake.write_text(src)
    assert {"mosaic.game", "mosaic.config", "mosaic.losses"} <= imports(fake, "mosaic.fake")
