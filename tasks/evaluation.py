"""The stages the evaluation needs and the evaluation's own, as Prefect tasks: the ablations,
the reward model, BPO, DPO (recast.stages.refiner, .baselines), the sets' fan-out unit and the
report (recast.stages.evaluate); as `dvc repro` runs them."""

from __future__ import annotations

from typing import Any

from prefect import task

from recast.config import Params
from recast.evaluation.results import SetResult
from recast.evaluation.run import MapSets
from recast.stages import baselines, refiner
from recast.stages import evaluate as stages
from tasks import runners


@task(name="ablate")
def ablate(params: Params, variant: str) -> dict[str, Any]:
    """An ablation refiner (no-cmaes, omega-0), resuming finished rounds."""
    return refiner.ablate(params, variant, resume=True)


@task(name="bpo")
def bpo(params: Params) -> dict[str, Any]:
    return baselines.bpo(params)


@task(name="dpo")
def dpo(params: Params) -> dict[str, Any]:
    return baselines.dpo(params)


@task(name="reward-model")
def reward(params: Params) -> dict[str, Any]:
    return baselines.reward(params)


# Retried: the judge or the generator may be a remote endpoint. Answers already written are
# reused on a retry (the answer cache keys them by their inputs).
@task(name="evaluate-set", retries=2, retry_delay_seconds=10)
def evaluate_set(params: Params, set_name: str) -> SetResult:
    return stages.evaluate_set(params, set_name)


def fan_out(params: Params) -> MapSets | None:
    """Prefect task mapping over the evaluation sets; None for the local default, which answers
    and judges them one after another in the flow's own process (one judge in memory)."""
    return runners.mapped(evaluate_set, params)


@task(name="report")
def report(params: Params) -> dict[str, Any]:
    return stages.report(params)
