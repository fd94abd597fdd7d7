"""Flow `evaluate`: what the systems need (reward model, ablation refiners, BPO optimizer, DPO
model, Align-Pro prompter), every comparison judged, then the report; as `dvc repro` runs
them. Judging is a subflow so that its per-set tasks run on the task runner
params.orchestration names (local, Dask or Ray)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from recast import runs
from recast.config import load_params
from recast.evaluation import stages
from tasks import evaluation, prompter, runners


# Retried as a whole when it runs in-process; a retry reuses every answer already written.
@flow(name="judge-sets", retries=2, retry_delay_seconds=10)
def judge_sets(params_file: str = "params.yaml", overrides: list[str] | None = None) -> dict:
    """Every evaluation set answered and judged, then the cells per set and over all sets."""
    p = load_params(params_file, overrides or [])
    return stages.evaluate_stage(p, map_sets=evaluation.fan_out(p))


@flow(name="evaluate")
def evaluate(
    params_file: str = "params.yaml", overrides: list[str] | None = None
) -> dict[str, Any]:
    p = load_params(params_file, overrides or [])
    reward = evaluation.reward(p)
    for variant in runs.ABLATIONS:
        evaluation.ablate(p, variant)
    evaluation.bpo(p)
    evaluation.dpo(p)
    prompter.train(p)  # Align-Pro's prompter (reused if train-prompter already made it)
    runner = runners.task_runner(p.orchestration)
    result = judge_sets.with_options(task_runner=runner)(params_file, overrides)
    written = evaluation.report(p)
    return {"reward": reward, "cells": result["cells"], "report": written["report"]}


if __name__ == "__main__":
    evaluate()
