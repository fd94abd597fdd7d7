# Two commands for a fresh machine (see README): `make run` and `make test`.
# Each creates or reuses .venv and installs what it needs first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
# Quiet and offline: no telemetry; the hub is never asked for a model behind your back.
export DVC_NO_ANALYTICS=1 DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
export MLFLOW_DISABLE_TELEMETRY=true HF_HUB_OFFLINE=1

.PHONY: run reproduce test lint setup

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# The main job on the embedded defaults (packaged models, bundled real samples): data ->
# warm start -> CMA-ES -> fine-tuning -> promotion -> ours vs ORG -> the summary it prints.
# DVC's own target: `dvc repro main` runs only the stages the main job depends on (here one
# stage at a time, so that the time each took is printed; scripts/repro_times.py).
MAIN_MODELS := smollm2-135m-instruct minilm-l6 qwen2.5-coder-1.5b-instruct
run: $(VENV)/.installed
	@start=$$(date +%s); \
	recast models fetch $(MAIN_MODELS) && python scripts/repro_times.py main && \
	cat reports/main/summary.txt && \
	echo "make run: $$(( ($$(date +%s) - start) / 60 )) min $$(( ($$(date +%s) - start) % 60 )) s"

# Everything: baselines (BoN, SR, BPO, DPO), ablations, Align-Pro and its λ sweep, the report.
reproduce: $(VENV)/.installed
	@start=$$(date +%s); \
	recast models fetch && python scripts/repro_times.py && \
	cat reports/main/summary.txt && echo "report: reports/eval/report.md" && \
	echo "make reproduce: $$(( ($$(date +%s) - start) / 60 )) min $$(( ($$(date +%s) - start) % 60 )) s"

test: $(VENV)/.installed
	recast models fetch smollm2-135m-instruct minilm-l6
	ruff check .
	pytest -q --durations=15

lint: $(VENV)/.installed
	ruff check . && ruff format --check .
