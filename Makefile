# Two commands do everything on a fresh machine:
#   make test   set up .venv, run unit tests and every notebook under strict nbval
#   make book   set up .venv, build the HTML book into _build/html (warnings are errors)
# Other targets: make install, make lint, make notebooks (re-execute all chapters in place),
#   make portability (every chapter's asserts under other floating-point numerics),
#   make lowest (the package at the lowest versions pyproject.toml allows),
#   make browser-check (the built book in headless Chromium: needs `apt-get install chromium`),
#   make code-lines (the longest code lines of each chapter).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed on its own, before everything else, so that nothing later pulls the
# multi-GB CUDA build. On a machine whose pip does not already serve a CPU wheel, use
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=
TORCH_PIP_ARGS := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
PYTEST_WORKERS ?= 2
# Stored outputs are recorded, and strictly compared, under the reference numerics
# (duel_tutorial/numerics.py: MKL at its vendor-neutral branch, the other libraries at
# their AVX2 paths, one thread, no GPU), the same on any x86-64 CPU with AVX2. make
# portability runs the asserts under others.
UNDER_REFERENCE := $(PY) scripts/numerics.py reference --
# -n: tests and notebooks spread over PYTEST_WORKERS processes (pytest-xdist). Notebooks go
# by loadscope, which keeps each notebook's cells together, in order, in one kernel; unit
# tests one by one (load), which balances the workers better (138 s against 152 s for
# make unit on a 2-core AMD EPYC, cold inductor cache).
XDIST := -n $(PYTEST_WORKERS) --dist loadscope
XDIST_TESTS := -n $(PYTEST_WORKERS) --dist load
NBVAL_LAX := $(PY) -m pytest $(XDIST) --nbval-lax --nbval-current-env book -q \
	--nbval-cell-timeout 600

.PHONY: install test unit nbval portability lowest lint book browser-check code-lines notebooks \
	sweep-test clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PIP_ARGS) "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet -r requirements.txt -e .
	touch $@

test: install lint unit nbval

# The workflows: jactionlint's correctness profile is what actionlint checks (syntax,
# expressions, action inputs, runner labels); offline, it never asks the GitHub API.
lint: install
	$(VENV)/bin/ruff check $(wildcard duel_tutorial tests benchmarks experiments scripts book _ext)
	$(VENV)/bin/jactionlint --no-online --profile correctness $(wildcard .github/workflows/*.yml)

unit: install
	$(UNDER_REFERENCE) $(PY) -m pytest $(XDIST_TESTS) tests -q -m "not ray"  # one thread per worker

# A 2 x 2 x 2 sweep on a local Ray instance (tests marked ray: Ray's start-up is slow).
sweep-test: install
	$(PY) -m pytest tests -q -m ray

nbval: install
	$(UNDER_REFERENCE) $(PY) -m pytest $(XDIST) --nbval --nbval-current-env book --nbval-sanitize-with book/nbval_sanitize.cfg \
		--nbval-cell-timeout 120 -q

book: install
	$(VENV)/bin/jupyter-book build . --warningiserror --keep-going --quiet

# Every page of the built book in headless Chromium (Debian's chromium package; nothing is
# downloaded): MathJax typeset everything, images load, local links and anchors exist, no
# console errors, every chapter links to Colab. Screenshots go to _build/screenshots.
browser-check: book
	$(PY) scripts/browser_check.py _build/html --screenshots _build/screenshots

code-lines: install
	$(PY) scripts/code_line_lengths.py

notebooks: install
	$(PY) scripts/execute_notebooks.py book/*.ipynb  # under the reference numerics

portability: install
	$(PY) scripts/numerics.py --portability -- $(NBVAL_LAX)

# The lowest versions pyproject.toml allows, in a fresh .venv-lowest (torch held at
# TORCH_VERSION's CPU wheel): ruff, the unit tests and four chapters in nbval lax mode.
lowest:
	PYTHON=$(PYTHON) TORCH_VERSION=$(TORCH_VERSION) TORCH_INDEX=$(TORCH_INDEX) \
		scripts/check_lowest_versions.sh

clean:
	rm -rf _build
