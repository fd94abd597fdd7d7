"""The task runner params.orchestration names, for the subflows whose tasks fan out (a CMA-ES
population's candidates, the evaluation sets)."""

from __future__ import annotations

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from recast.config import OrchestrationParams
from recast.errors import ConfigError


def task_runner(o: OrchestrationParams) -> TaskRunner:
    """Where fanned-out tasks run: threads (local), Dask or Ray."""
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
