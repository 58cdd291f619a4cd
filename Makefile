# physkit: two commands do all set-up on a fresh machine.
#   make run   - create .venv, install, run the demo on data/jets_sample.h5
#   make test  - create .venv, install, run the default (fast) test suite
#   make test-browser - install Debian's chromium (apt) and playwright (pip), check the
#                       report in that browser
#   make screenshots  - the same browser set-up, then remake docs/*.png
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: install run test test-slow test-browser browser screenshots bench clean

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

# a real browser for the report check: Debian's chromium, driven by playwright's Python API
# (playwright's own browser download is not used: executable_path=/usr/bin/chromium)
browser: $(STAMP)
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	$(PIP) install playwright

test-browser: browser
	PHYSKIT_BROWSER_TEST=1 $(PY) -m pytest -q tests/pipeline/test_report_browser.py

screenshots: browser
	$(PY) docs/make_screenshots.py

clean:
	rm -rf $(VENV) out scratch .pytest_cache
