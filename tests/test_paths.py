import os

from mosaic.paths import project_root, use_project_root


def test_project_root_found_from_a_subfolder(tmp_path, monkeypatch):
    (tmp_path / "mosaic").mkdir()
    (tmp_path / "mosaic" / "__init__.py").write_text("")
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert project_root() == tmp_path.resolve()
    assert use_project_root() == tmp_path.resolve() and os.getcwd() == str(tmp_path.resolve())


def test_outside_a_project_nothing_moves(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert project_root() is None
    assert use_project_root() == tmp_path.resolve()
