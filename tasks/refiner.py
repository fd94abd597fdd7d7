"""The refiner's stages as Prefect tasks; the same functions the DVC `search` / `train` run."""

from __future__ import annotations

from typing import Any

from prefect import task

from recast import promotion, runs
from recast.config import Params


@task(name="cmaes-search")
def search(params: Params) -> dict[str, Any]:
    """Round 1's CMA-ES search; resumes from its checkpoint when a worker restarts it."""
    return runs.search_stage(params, resume=True)


@task(name="train-rounds")
def train(params: Params) -> dict[str, Any]:
    """Algorithm 1's rounds: search -> pseudo-labels -> fine-tune, resuming finished rounds."""
    return runs.train_stage(params, resume=True)


@task(name="promote")
def promote(params: Params) -> dict[str, Any]:
    """The registry gate: 'champion' moves to the new 'challenger' only if it wins."""
    return promotion.promote(params)
