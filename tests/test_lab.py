"""JupyterLab end to end: notebook 03 in a real (headless Chromium) browser, its widget live.

nbval proves that cells run; it cannot see whether a slider renders, whether the widget manager finds
its models, or whether a figure updates when the slider moves. This test starts JupyterLab on loopback
(free port, random token) with the project's venv as the ``python3`` kernel, opens a parameterised copy
of ``notebooks/03_patch_discrimination.ipynb`` in Debian's Chromium through Selenium (no browser
download), runs all cells from the Run menu and checks that

* every code cell ran, none with an error output;
* the interact control renders as real widgets (slider + output area), not the text fallback;
* dragging the ``index`` slider changes the figure;
* "Error displaying widget" / "model not found" appear nowhere on the page.

Screenshots (before/after the move, and on failure) and the server log go to ``$MOSAIC_LAB_ARTIFACTS``
(default ``runs/lab_test/artifacts/``). The server's process group is killed even when the test fails.

Speed: a 4-step run of the notebook's config is trained in a temp folder first (the cached teacher
under ``checkpoints/teachers/`` is reused, else trained once), and the notebook gets small parameters.

Needs chromium + chromedriver (Debian packages chromium, chromium-driver), selenium and jupyterlab:
skipped when one is missing, except under ``CI=true`` where it fails instead.
``MOSAIC_LAB_DISABLE_EXTENSIONS`` (comma-separated lab extension names) disables extensions in the
test's server, e.g. ``@jupyter-widgets/jupyterlab-manager`` to see the test catch a broken widget.
"""
from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "03_patch_discrimination.ipynb"
VENV_BIN = Path(sys.executable).parent  # the project's venv (make test runs .venv/bin/python -m pytest)
ARTIFACTS = Path(os.environ.get("MOSAIC_LAB_ARTIFACTS", ROOT / "runs" / "lab_test" / "artifacts"))
# notebook parameters besides run_dir (the tiny run trained here); only those the notebook declares are set
# (run_steps: the notebook's older name for the run's steps, steps_if_missing: its newer one)
PARAMS = {"run_steps": 4, "steps_if_missing": 4, "n_images": 64, "n_maps": 2}
STEPS = 4
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000"]
WIDGET_ERRORS = ("Error displaying widget", "model not found")
ANSI = r"\x1b\[[0-9;]*m"  # colours in tracebacks
RUN_TIMEOUT_S = 300  # all cells of the notebook (the tiny run is loaded, not trained)


# ----------------------------------------------------------------------------- what the test needs

def _missing() -> list[str]:
    import importlib.util

    missing = [f"{exe} (apt-get install chromium chromium-driver)" for exe in ("chromium", "chromedriver")
               if shutil.which(exe) is None]
    missing += [f"python package {m} (pip install -e '.[all]')" for m in ("selenium", "jupyterlab", "ipywidgets")
                if importlib.util.find_spec(m) is None]
    if not (VENV_BIN / "jupyter").exists():
        missing.append(f"{VENV_BIN / 'jupyter'} (make install)")
    return missing


@pytest.fixture(scope="module")
def requirements():
    missing = _missing()
    if missing:
        msg = "JupyterLab browser test needs: " + "; ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " (CI=true: .ci/run installs these, so this is a failure, not a skip)")
        pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- the notebook and its run

@pytest.fixture(scope="module")
def notebook_dir(requirements, tmp_path_factory):
    """A folder inside the repository (git-ignored runs/) holding a parameterised copy of notebook 03,
    never executed; its run_dir is a 4-step run trained here. Inside the repository so that the
    notebook's ``use_project_root()`` finds data/ and checkpoints/."""
    from mosaic.config import RunConfig
    from mosaic.train import train

    run_dir = tmp_path_factory.mktemp("lab") / "run"
    # the notebook's own config (RunConfig defaults but out_dir/steps/device); eval/ckpt cadence may differ
    train(RunConfig(out_dir=str(run_dir), steps=STEPS, eval_every=0, ckpt_every=STEPS,
                    data_root=str(ROOT / "data"), teacher_dir=str(ROOT / "checkpoints" / "teachers")),
          progress=False)
    folder = ROOT / "runs" / "lab_test" / f"nb-{os.getpid()}-{secrets.token_hex(3)}"
    folder.mkdir(parents=True)
    try:
        yield _write_notebook(folder, run_dir)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _write_notebook(folder: Path, run_dir: Path) -> Path:
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:  # a fresh, never-run notebook: the browser run is the only one
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    # papermill's convention: an "injected-parameters" cell right after the "parameters" cell
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    declared = set(re.findall(r"^(\w+)\s*[:=]", "".join(nb.cells[at].source), flags=re.M))
    assert "run_dir" in declared, f"notebook 03's parameters cell no longer declares run_dir: {sorted(declared)}"
    params = {k: v for k, v in {"run_dir": str(run_dir), **PARAMS}.items() if k in declared}
    source = "# Parameters (tests/test_lab.py)\n" + "\n".join(f"{k} = {v!r}" for k, v in params.items())
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
    nbformat.write(nb, folder / NOTEBOOK.name)
    return folder


# ----------------------------------------------------------------------------- the server

@pytest.fixture(scope="module")
def lab_server(notebook_dir, tmp_path_factory):
    """JupyterLab on 127.0.0.1:<free port> with a random token, the venv's kernel spec first on JUPYTER_PATH,
    user config/settings/workspaces isolated in temp folders. Yields (url, token); the process group is
    terminated (then killed) whatever happens."""
    tmp = tmp_path_factory.mktemp("labserver")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port, token = _free_port(), secrets.token_hex(24)
    config_dir, settings_dir = tmp / "config", tmp / "settings"
    disabled = {"@jupyterlab/apputils-extension:announcements": True}  # no news prompt over the page
    disabled.update({name.strip(): True for name in os.environ.get("MOSAIC_LAB_DISABLE_EXTENSIONS", "").split(",")
                     if name.strip()})
    (config_dir / "labconfig").mkdir(parents=True)
    (config_dir / "labconfig" / "page_config.json").write_text(json.dumps({"disabledExtensions": disabled}))
    # every cell in the DOM (no virtual scrolling), so the checks below see all of them
    tracker = settings_dir / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_PATH", "JUPYTER_DATA_DIR")}
    env.update(JUPYTER_CONFIG_DIR=str(config_dir), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               JUPYTER_PATH=str(VENV_BIN.parent / "share" / "jupyter"), JUPYTER_DATA_DIR=str(tmp / "data"))
    cmd = [str(VENV_BIN / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={notebook_dir}",
           "--allow-root", "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={settings_dir}",
           f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
           "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate"]
    log_path = ARTIFACTS / "lab_server.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=notebook_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer in 120 s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
        yield url, token
    finally:
        _stop(proc)
        _kill_kernels(tmp / "runtime")
        log.close()


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
            os.killpg(proc.pid, signal.SIGKILL)  # kernels left in the group
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            pass
        return


def _kill_kernels(runtime_dir: Path) -> None:
    """SIGKILL kernels still alive after the server stopped (it shuts them down itself unless it hung):
    jupyter_client starts each in its own session, with a connection file in this server's runtime dir."""
    marker = str(runtime_dir).encode()
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (proc_dir / "cmdline").read_bytes():
                os.kill(int(proc_dir.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


# ----------------------------------------------------------------------------- the browser

@pytest.fixture
def browser(lab_server, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=shutil.which("chromedriver"))  # given paths: Selenium Manager never runs
    driver = webdriver.Chrome(options=opts, service=service)
    try:
        yield driver
    finally:
        driver.quit()


# JavaScript run in the page: the notebook panel's model, found by its path (arguments[0]) among the main-area
# widgets (JupyterLab exposes the app as window.jupyterapp under --LabApp.expose_app_in_browser)
JS_STATE = """
const app = window.jupyterapp;
if (!app || !app.shell) return {ready: false, why: 'no app'};
const panel = [...app.shell.widgets('main')].find(w => w.context && w.context.path === arguments[0]);
if (!panel || !panel.content || !panel.content.model || !panel.sessionContext) return {ready: false, why: 'no notebook'};
const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
const cells = panel.content.model.cells;
const state = {ready: true, path: panel.context.path, kernel: kernel ? kernel.status : null,
               kernelName: kernel ? kernel.name : null, code: 0, ran: 0, errors: [],
               running: document.querySelectorAll('.jp-Notebook .jp-InputPrompt').length ?
                        [...document.querySelectorAll('.jp-Notebook .jp-InputPrompt')].filter(p => p.textContent.includes('*')).length : 0};
for (let i = 0; i < cells.length; i++) {
  const c = cells.get(i);
  if (c.type !== 'code') continue;
  state.code += 1;
  if (c.executionCount) state.ran += 1;
  for (let j = 0; j < c.outputs.length; j++) {
    const o = c.outputs.get(j).toJSON();
    if (o.output_type === 'error') state.errors.push({cell: i, ename: o.ename, evalue: o.evalue,
                                                      source: c.toJSON().source,
                                                      traceback: (o.traceback || []).join('\\n')});
  }
}
return state;
"""


def _wait(driver, what: str, fn, timeout: float, poll: float = 0.5, until=bool):
    """Poll ``fn()`` until ``until(value)``; return that value. On timeout: a screenshot, then fail with
    the last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if until(last):
            return last
        time.sleep(poll)
    _shot(driver, "failure")
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last state: {last!r}")


def _shot(driver, name: str, element=None) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    try:
        (element.screenshot(str(path)) if element is not None else driver.save_screenshot(str(path)))
        print(f"screenshot: {path}")
    except Exception as e:  # noqa: BLE001  (a screenshot must not hide the real failure)
        print(f"screenshot {path} failed: {e}")
    return path


def _page_text(driver) -> str:
    return driver.execute_script("return document.body.innerText")


def _widget_output_image(cell) -> str:
    """The src of the figure inside the interact's output widget ('' while none is shown)."""
    from selenium.webdriver.common.by import By

    imgs = cell.find_elements(By.CSS_SELECTOR, ".widget-interact .widget-output img, .widget-interact img")
    return (imgs[-1].get_attribute("src") or "") if imgs else ""


# ----------------------------------------------------------------------------- the test

def test_notebook_03_widget_is_live_in_jupyterlab(lab_server, browser, notebook_dir):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    t0 = time.monotonic()
    url, token = lab_server
    driver = browser
    # the kernel the server will start for the notebook is the project's venv
    with urllib.request.urlopen(f"{url}/api/kernelspecs?token={token}", timeout=10) as r:
        specs = json.load(r)
    argv0 = Path(specs["kernelspecs"]["python3"]["spec"]["argv"][0])
    assert argv0.resolve() == Path(sys.executable).resolve() or argv0.parent == VENV_BIN, \
        f"the python3 kernel runs {argv0}, not the project's venv ({sys.executable})"

    try:
        driver.get(f"{url}/lab/tree/{NOTEBOOK.name}?token={token}")
        state = _wait(driver, "the notebook with an idle kernel", lambda: driver.execute_script(JS_STATE, NOTEBOOK.name),
                      until=lambda s: s.get("ready") and s["kernel"] == "idle", timeout=60)
        assert state["path"] == NOTEBOOK.name and state["kernelName"] == "python3", state
        _shot(driver, "0_opened")

        # Run > Run All Cells, as a user would (after a click into the notebook: the menu acts on the focused one)
        driver.find_element(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell .jp-InputPrompt").click()
        driver.find_element(By.XPATH, "//div[contains(@class,'lm-MenuBar-itemLabel') and text()='Run']").click()
        _wait(driver, "Run All Cells in the Run menu", lambda: driver.find_elements(
            By.XPATH, "//li[contains(@class,'lm-Menu-item')][.//div[contains(@class,'lm-Menu-itemLabel') and "
                      "text()='Run All Cells']]"), timeout=10)[0].click()

        def finished(s):  # all code cells ran, or one raised (run-all stops there: reported below)
            return s["kernel"] == "idle" and (s["errors"] or (s["ran"] == s["code"] and s["running"] == 0))

        state = _wait(driver, "all cells to run", lambda: driver.execute_script(JS_STATE, NOTEBOOK.name), until=finished,
                      timeout=RUN_TIMEOUT_S, poll=1)
        errors = "\n\n".join(f"cell {e['cell']} ({e['ename']}: {e['evalue']}):\n{''.join(e['source'])}\n"
                             f"{re.sub(ANSI, '', e['traceback'])[-2000:]}" for e in state["errors"])
        assert not state["errors"], f"cells raised in JupyterLab:\n{errors}"
        assert state["ran"] == state["code"], state
        print(f"all {state['code']} code cells ran in {time.monotonic() - t0:.0f} s (since page load)")

        # the last code cell holds the interact: real widgets, not the text fallback
        cell = driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-CodeCell")[-1]
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", cell)
        _wait(driver, "the widget to render (or fail)", lambda: cell.find_elements(By.CSS_SELECTOR, ".widget-interact")
              or any(t in cell.text for t in ("IntSlider(", "interactive(", *WIDGET_ERRORS)), timeout=30)
        out_text = cell.find_element(By.CSS_SELECTOR, ".jp-OutputArea").text
        for bad in WIDGET_ERRORS:
            assert bad not in out_text, f"the widget failed to display: {out_text[:500]!r}"
        assert "IntSlider(" not in out_text and "interactive(" not in out_text, \
            f"the control rendered as its text fallback (no widget manager?): {out_text[:500]!r}"
        sliders = cell.find_elements(By.CSS_SELECTOR, ".widget-interact .widget-hslider")
        assert sliders, f"no slider widget in the interact output: {out_text[:500]!r}"
        index = next((s for s in sliders if "index" in s.text), sliders[0])
        readout = index.find_element(By.CSS_SELECTOR, ".widget-readout")
        before_img = _wait(driver, "the first figure in the widget's output area",
                           lambda: _widget_output_image(cell), timeout=60)
        before_value = readout.text.strip()
        _shot(driver, "1_widget_before")
        _shot(driver, "1_widget_before_cell", cell)

        # drag the index slider's handle a third of its track to the right, as a user would
        handle = index.find_element(By.CSS_SELECTOR, ".noUi-handle")
        track = index.find_element(By.CSS_SELECTOR, ".slider-container, .noUi-target")
        ActionChains(driver).click_and_hold(handle).move_by_offset(track.size["width"] // 3, 0).release().perform()
        after_value = _wait(driver, "the slider value to change",
                            lambda: (v := readout.text.strip()) != before_value and v, timeout=15)
        after_img = _wait(driver, "the figure to change after the move",
                          lambda: (s := _widget_output_image(cell)) and s != before_img and s, timeout=60)
        _wait(driver, "the kernel to go idle", lambda: driver.execute_script(JS_STATE, NOTEBOOK.name),
              until=lambda s: s["kernel"] == "idle", timeout=60)
        after_img = _widget_output_image(cell) or after_img  # the last of the updates
        _shot(driver, "2_widget_after")
        _shot(driver, "2_widget_after_cell", cell)
        n_figures = len(cell.find_elements(By.CSS_SELECTOR, ".widget-interact .widget-output img"))
        assert n_figures == 1, f"the widget's output area shows {n_figures} figures, expected one"
        print(f"index slider {before_value} -> {after_value}; figure changed "
              f"({len(before_img)} -> {len(after_img)} chars of data URL)")
        assert after_img.startswith("data:image/png;base64,")
        assert len(base64.b64decode(after_img.split(",", 1)[1])) > 1000  # a drawn figure, not an empty image

        page = _page_text(driver)
        for bad in WIDGET_ERRORS:
            assert bad not in page, f"{bad!r} on the page"
        state = driver.execute_script(JS_STATE, NOTEBOOK.name)
        assert not state["errors"], state["errors"]
        print(f"lab test wall time {time.monotonic() - t0:.0f} s (browser part); screenshots in {ARTIFACTS}")
    except BaseException:
        _shot(driver, "failure")
        raise
