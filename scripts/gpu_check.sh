#!/usr/bin/env bash
# The GPU check (scripts/gpu_check.py) on a machine where recast is not installed and nothing
# can be downloaded: recast is imported from src/, and cma, the one dependency GPU images
# usually lack, from a wheel saved beforehand in .whl/ (git-ignored; about 350 KB).
#
#   scripts/gpu_check.sh prepare            # here, with network: saves the cma wheel in .whl/
#   scripts/gpu_check.sh [ARGS...]          # there: python scripts/gpu_check.py ARGS...
#
# Nothing else has to travel: the models are built from configs with random weights.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ${1:-} == prepare ]]; then
    # the version this checkout's environment runs, so both sides use the same CMA-ES code
    version=$(${PYTHON:-.venv/bin/python} -c 'import importlib.metadata as m; print(m.version("cma"))')
    ${PYTHON:-.venv/bin/python} -m pip download -q --no-deps --only-binary=:all: "cma==$version" -d .whl
    ls -l .whl/cma-*.whl
    exit 0
fi

# .venv's Python where one exists (a development checkout), else the machine's python3
python=${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

if ! "$python" -c 'import cma' 2>/dev/null; then
    shopt -s nullglob
    wheels=(.whl/cma-*.whl)
    if ((${#wheels[@]} == 0)); then
        echo "gpu_check: cma is not installed and .whl/ holds no cma wheel: run" \
            "'scripts/gpu_check.sh prepare' where pip can download, and bring .whl/ along" >&2
        exit 2
    fi
    site=$(mktemp -d)
    "$python" -m pip install -q --no-index --no-deps --no-compile --target "$site" "${wheels[@]}"
    export PYTHONPATH="$PYTHONPATH:$site"
fi

exec "$python" scripts/gpu_check.py "$@"
