"""Align-Pro's stages as Prefect tasks; the same functions `dvc repro` runs."""

from __future__ import annotations

from typing import Any

from prefect import task

from recast import alignpro, promotion
from recast.config import Params


# Retried: the reward calls the generator, which may be a remote endpoint.
@task(name="grpo-prompter", retries=1, retry_delay_seconds=10)
def train(params: Params) -> dict[str, Any]:
    return alignpro.train_prompter(params)


@task(name="lambda-sweep", retries=1, retry_delay_seconds=10)
def sweep(params: Params) -> dict[str, Any]:
    return alignpro.sweep(params)


@task(name="prompter-report")
def report(params: Params) -> dict[str, Any]:
    return alignpro.report(params)


@task(name="promote-prompter")
def promote(params: Params) -> dict[str, Any]:
    return promotion.promote(params, kind="prompter")
