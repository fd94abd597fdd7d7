"""Flow `evaluate`: every comparison answered and judged, then the report; as `dvc repro
evaluate report` runs them. It evaluates what the other flows trained (`train-baselines`:
reward model, ablations, BPO, DPO, the Align-Pro prompter). Judging is a subflow so that its
per-set tasks run on the task runner params.orchestration names (local, Dask or Ray)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from recast.config import load_params
from recast.stages import evaluate as stages
from tasks import evaluation, runners


# Retried as a whole when it runs in-process; a retry reuses every answer already written.
@flow(name="judge-sets", retries=2, retry_delay_seconds=10)
def judge_sets(params_file: str = "params.yaml", overrides: list[str] | None = None) -> dict:
    """Stage `evaluate`: every set answered and judged, then the cells per set and over all."""
    p = load_params(params_file, overrides or [])
    return stages.evaluate(p, map_sets=evaluation.fan_out(p))


@flow(name="evaluate")
def evaluate(
    params_file: str = "params.yaml", overrides: list[str] | None = None
) -> dict[str, Any]:
    p = load_params(params_file, overrides or [])
    runner = runners.task_runner(p.orchestration)
    result = judge_sets.with_options(task_runner=runner)(params_file, overrides)
    written = evaluation.report(p)
    return {"cells": result["cells"], "report": written["report"]}


if __name__ == "__main__":
    evaluate()
