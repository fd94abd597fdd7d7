"""Align-Pro's stages as Prefect tasks: recast.stages.prompter and the prompter's gate."""

from __future__ import annotations

from typing import Any

from prefect import task

from recast.config import Params
from recast.stages import prompter as stages
from recast.stages.promote import promote as run_promote


# Retried: the reward calls the generator, which may be a remote endpoint.
@task(name="grpo-prompter", retries=1, retry_delay_seconds=10)
def train(params: Params) -> dict[str, Any]:
    return stages.prompter(params)


@task(name="lambda-sweep", retries=1, retry_delay_seconds=10)
def sweep(params: Params) -> dict[str, Any]:
    return stages.sweep(params)


@task(name="prompter-report")
def report(params: Params) -> dict[str, Any]:
    return stages.report(params)


@task(name="promote-prompter")
def promote(params: Params) -> dict[str, Any]:
    return run_promote(params, kind="prompter")
