"""The evaluation stages as Prefect tasks; the same functions `dvc repro` runs."""

from __future__ import annotations

from typing import Any

from prefect import task

from recast import runs
from recast.config import Params
from recast.evaluation import bpo as bpo_module
from recast.evaluation import dpo as dpo_module
from recast.evaluation import report as report_module
from recast.evaluation import stages
from tasks import runners


@task(name="ablate")
def ablate(params: Params, variant: str) -> dict[str, Any]:
    """An ablation refiner (no-cmaes, omega-0), resuming finished rounds."""
    return runs.train_stage(runs.ablation_params(params, variant), resume=True)


@task(name="bpo")
def bpo(params: Params) -> dict[str, Any]:
    return bpo_module.bpo_stage(params)


@task(name="dpo")
def dpo(params: Params) -> dict[str, Any]:
    return dpo_module.dpo_stage(params)


@task(name="reward-model")
def reward(params: Params) -> dict[str, Any]:
    return stages.reward_stage(params)


# Retried: the judge or the generator may be a remote endpoint. Answers already written are
# reused on a retry (evaluate_set keys them by their inputs).
@task(name="evaluate-set", retries=2, retry_delay_seconds=10)
def evaluate_set(params: Params, set_name: str) -> stages.SetResult:
    return stages.evaluate_set(params, set_name)


def fan_out(params: Params) -> stages.MapSets | None:
    """Prefect task mapping over the evaluation sets; None for the local default, which answers
    and judges them one after another in the flow's own process (one judge in memory)."""
    return runners.mapped(evaluate_set, params)


@task(name="report")
def report(params: Params) -> dict[str, Any]:
    return report_module.report_stage(params)
