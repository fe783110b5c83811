# Two commands for a fresh clone: `make train` and `make test`. Each builds .venv on first use:
# `make train` installs what a run needs, `make test` adds the dev tools (pytest, ruff, the docs
# site's and the notebooks' packages).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch to install into a new venv. torch==2.13.0 is the CPU wheel on this project's machines;
# elsewhere a CPU-only user sets: TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
ARGS ?=

.PHONY: train test test-all lint docs docs-check venv dev clean
venv: $(VENV)/.runtime
dev: $(VENV)/.dev

# A venv with torch in it: torch first, by pip (it reads this machine's wheel of torch; uv does
# not) and only if missing, so the range in pyproject never pulls a second copy. Its bytecode (and
# that of sympy and networkx, which come with it) compiled on every core: this project's machines
# set PYTHONDONTWRITEBYTECODE, so nothing would cache it later, and uv's --compile-bytecode below
# leaves what pip installed alone; without it every process importing torch and Lightning took
# 7.6 s instead of 4.4 (pip compiling on one core: 25 s against 9 s here; -x: one file of
# torch's tests is Python 3.12 syntax).
PURELIB = $$($(PY) -c "import sysconfig; print(sysconfig.get_path('purelib'))")
define venv_with_torch
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || { $(PY) -m pip install --no-compile $(TORCH_SPEC) && \
		$(PY) -m compileall -q -j 0 -x py312_ $(PURELIB)/torch $(PURELIB)/sympy $(PURELIB)/networkx; }
	test -x $(VENV)/bin/uv || $(PY) -m pip install -q uv
endef
# The rest by uv, which keeps the installed torch and fetches in parallel: the dev venv's packages
# in 22 s where pip took 95 s (docs/install.md), their bytecode compiled on every core.
UV_INSTALL := $(VENV)/bin/uv pip install --python $(PY) --compile-bytecode

$(VENV)/.runtime: pyproject.toml
	$(venv_with_torch)
	$(UV_INSTALL) -e .
	touch $@

$(VENV)/.dev: pyproject.toml
	$(venv_with_torch)
	$(UV_INSTALL) -e ".[dev]"
	$(search_deps)
	touch $(VENV)/.runtime $@

# The search extra (hydra/sweeper=optuna) in a folder of its own, at the venv's versions of what
# they share: optuna 2 needs scipy, which in the venv itself costs every Lightning import 0.8 s.
# tests/test_sweep.py's search test puts it on PYTHONPATH (PYTHONPATH=.venv/search for a user).
define search_deps
	$(VENV)/bin/uv pip freeze --python $(PY) | grep -v -e '^-e' -e '^tinygpt' > $(VENV)/constraints.txt
	$(VENV)/bin/uv pip install -q --python $(PY) --target $(VENV)/search \
		--constraint $(VENV)/constraints.txt "hydra-optuna-sweeper>=1.2"  # pyproject's search extra
endef

train: venv
	$(PY) scripts/train.py $(ARGS)

test: dev
	$(PY) -m pytest $(ARGS)

test-all: dev
	$(PY) -m pytest -m "" $(ARGS)

lint: dev
	$(VENV)/bin/ruff check .

# The docs as a site (Sphinx, MyST Markdown, furo), served on http://localhost:8000
docs: dev
	$(PY) -m sphinx -q -b html docs docs/_build/html
	$(PY) -m http.server --directory docs/_build/html 8000

# What CI builds: every warning (a dead link, an anchor that is not there, a page left out) fails
docs-check: dev
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html

clean:
	rm -rf $(VENV) outputs multirun   # the token cache is ~/.cache/tinygpt ($$TINYGPT_CACHE)
