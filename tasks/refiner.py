"""The refiner's Prefect tasks: a candidate's fitness (the unit a population fans out into) and
the registry gate; plus the task runner params.orchestration names."""

from __future__ import annotations

from typing import Any

import numpy as np
from prefect import task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from recast import distributed, promotion
from recast.config import OrchestrationParams, Params
from recast.distributed import CandidateJob, MapFn
from recast.errors import ConfigError


# Retried: the generator may be a remote endpoint. Not cached: each ξ is scored once per search
# and the search's own checkpoint already makes a restart skip finished iterations.
@task(name="candidate-fitness", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def candidate_fitness(job: CandidateJob, e: np.ndarray) -> float:
    return distributed.candidate_fitness(job, e)


def fan_out(params: Params) -> MapFn | None:
    """Prefect task mapping over a population's candidates; None for the local default, which
    scores the population batched in the flow's own process."""
    if params.orchestration.runner == "local":
        return None
    return lambda job, es: candidate_fitness.map(unmapped(job), es).result()


def task_runner(o: OrchestrationParams) -> TaskRunner:
    """The runner a search's candidate tasks go to: threads (local), Dask or Ray."""
    if o.runner == "local":
        return ThreadPoolTaskRunner()
    if o.runner == "dask":
        from prefect_dask import DaskTaskRunner

        if o.address:
            return DaskTaskRunner(address=o.address)
        # processes, one thread each: torch in one process already uses the cores it has
        return DaskTaskRunner(
            cluster_kwargs={"n_workers": o.workers, "processes": True, "threads_per_worker": 1}
        )
    if o.runner == "ray":
        try:
            from prefect_ray import RayTaskRunner
        except ImportError as e:
            raise ConfigError(
                "orchestration.runner 'ray' needs prefect-ray: pip install 'recast[ray]'"
            ) from e
        if o.address:
            return RayTaskRunner(address=o.address)
        return RayTaskRunner(init_kwargs={"num_cpus": o.workers})
    raise ConfigError(f"orchestration.runner {o.runner!r} is not one of local, dask, ray")


@task(name="promote")
def promote(params: Params) -> dict[str, Any]:
    """The registry gate: 'champion' moves to the new 'challenger' only if it wins."""
    return promotion.promote(params)
