"""The refiner's Prefect tasks: the teacher's rewrites and the warm start (recast.stages.refiner),
a candidate's fitness (the unit a population fans out into) and the registry gate."""

from __future__ import annotations

from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from recast import distributed
from recast.config import Params
from recast.distributed import CandidateJob, MapFn
from recast.stages import refiner as stages
from recast.stages.promote import promote as run_promote
from tasks import runners


@task(name="rewrites")
def rewrites(params: Params) -> dict[str, Any]:
    return stages.rewrites(params)


@task(name="warmstart")
def warmstart(params: Params) -> dict[str, Any]:
    return stages.warmstart(params)


# Retried: the generator may be a remote endpoint. Not cached: each ξ is scored once per search
# and the search's own checkpoint already makes a restart skip finished iterations.
@task(name="candidate-fitness", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def candidate_fitness(job: CandidateJob, e: np.ndarray) -> float:
    return distributed.candidate_fitness(job, e)


def fan_out(params: Params) -> MapFn | None:
    """Prefect task mapping over a population's candidates; None for the local default, which
    scores the population batched in the flow's own process."""
    return runners.mapped(candidate_fitness, params)


@task(name="promote")
def promote(params: Params) -> dict[str, Any]:
    """The registry gate: 'champion' moves to the new 'challenger' only if it wins."""
    return run_promote(params)
