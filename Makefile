# physkit: two commands do all set-up on a fresh machine.
#   make run   - create .venv, install, run the demo on data/jets_sample.h5
#   make test  - create .venv, install, run the default (fast) test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: install run test test-slow bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel
	# CPU build of torch, pinned (a plain `torch` would pull a multi-GB CUDA build)
	$(PIP) install torch==2.13.0
	$(PIP) install numpy scipy cython
	# energyflow's `wasserstein` ships numpy-1 wheels only: build it against numpy 2
	$(PIP) install --no-cache-dir --no-build-isolation --no-binary wasserstein wasserstein
	$(PIP) install -e '.[test,energyflow,root]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/physkit demo --out out/demo

test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

clean:
	rm -rf $(VENV) out .pytest_cache
