# Two commands for a fresh clone: `make train` and `make test`. Each builds .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch to install into a new venv. torch==2.13.0 is the CPU wheel on this project's machines;
# elsewhere a CPU-only user sets: TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
ARGS ?=

.PHONY: train test test-all lint venv clean
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@# Install torch first and only if missing, so the range in pyproject never pulls a second copy.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install $(TORCH_SPEC)
	$(PY) -m pip install -e ".[dev]"
	touch $@

train: venv
	$(PY) scripts/train.py $(ARGS)

test: venv
	$(PY) -m pytest $(ARGS)

test-all: venv
	$(PY) -m pytest -m "" $(ARGS)

lint: venv
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) outputs multirun   # the token cache is ~/.cache/tinygpt ($$TINYGPT_CACHE)
