# Two commands for a fresh machine:  `make demo` (the main job)  and  `make test` (every test).
# Both create .venv if missing, install the package with its extras, and obtain the default data.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= runs/demo
SEED   ?= 0

.PHONY: demo test test-fast data install notebooks bench clean-runs lab

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch is pinned nowhere: pip resolves torch/torchvision from pyproject.toml (on this project's
# machines, from the local wheels of torch 2.14.1 / torchvision 0.29.1).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[all]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

install: $(VENV)/.installed

# The default offline data: Fashion-MNIST (torchvision download, else Debian's dataset-fashion-mnist).
data: install
	$(BIN)/python -m mosaic.data.fetch fmnist --root data

demo: data
	mkdir -p $(OUT)
	$(BIN)/papermill notebooks/02_train.ipynb $(OUT)/02_train.ipynb -p out_dir $(OUT) -p seed $(SEED) --cwd . --log-output
	@$(BIN)/python -c "import json; m = json.load(open('$(OUT)/metrics.json')); print({k: m[k] for k in ('method', 'dataset', 'ood', 'steps', 'student_acc', 'teacher_acc', 'agreement', 'wall_s')})"

# unit tests, then the notebook regression: nbval re-executes every notebook and compares the cells marked
# `# NBVAL_CHECK_OUTPUT` with their stored outputs (notebooks/README.md)
test: data
	$(BIN)/python -m pytest -q
	$(BIN)/python -m pytest -q --nbval-lax --nbval-current-env --nbval-cell-timeout=3000 \
		--nbval-sanitize-with notebooks/sanitize.cfg notebooks/

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# JupyterLab on the repository (notebooks/ in the file browser) with this venv as the `python3` kernel:
# JUPYTER_PATH puts the venv's kernel spec and lab extensions (the ipywidgets manager) ahead of any per-user
# ones. LAB_ARGS adds options, e.g. `make lab LAB_ARGS="--no-browser --port 8890"`; --allow-root when root.
LAB_ARGS ?=
lab: data
	JUPYTER_PATH=$(abspath $(VENV))/share/jupyter $(BIN)/jupyter lab --ServerApp.root_dir=. \
		$(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# re-execute every notebook in place (stores the outputs that nbval compares against)
notebooks: data
	$(BIN)/python -m mosaic.grid notebooks/0*.ipynb

# the measured tables of README "Results" (about 2.5 h on 2 CPU cores); speed last, on a quiet machine
bench: data
	$(BIN)/python -m mosaic.bench quality --jobs 2 --threads 1
	$(BIN)/python -m mosaic.bench quality --task seg --jobs 2 --threads 1
	$(BIN)/python -m mosaic.bench parity --threads 1 --fast library+bf16+cl library --seeds 0 1 2 3 4
	$(BIN)/python -m mosaic.bench speed --threads 1 --compile --phases 2 --steps 5 --rounds 6

clean-runs:
	rm -rf runs
