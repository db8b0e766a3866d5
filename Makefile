# Two commands on a fresh machine: `make demo` and `make test` (both create the venv first).
# GPU users: `make setup MXNET=mxnet-cu112` (CUDA 11.2 build; not testable on our CI).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
MXNET ?= mxnet
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= work/demo
PYTEST_ARGS ?=

.PHONY: setup demo test lint clean-demo

setup: $(VENV)/.installed-$(MXNET)

$(VENV)/.installed-$(MXNET): requirements.txt requirements-dev.txt setup.py
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "emotion_mx needs Python 3.11 (MXNet 1.9.1 wheels); set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel setuptools cython
	sed 's/^mxnet==/$(MXNET)==/' requirements.txt > $(VENV)/requirements.resolved.txt
	$(PY) -m pip install -q -r $(VENV)/requirements.resolved.txt -r requirements-dev.txt 'numpy==1.23.5'
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $@

demo: setup
	$(PY) tools/demo.py --out $(DEMO_DIR)

test: setup
	$(PY) -m pytest tests -q $(PYTEST_ARGS)

# the layering rule of docs/DESIGN.md (.importlinter)
lint: setup
	PYTHONPATH=. $(VENV)/bin/lint-imports

clean-demo:
	rm -rf $(DEMO_DIR)
