"""The task runner params.orchestration names, for the subflows whose tasks fan out (a CMA-ES
population's candidates, the evaluation sets), and the mapping that fans them out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import Task, unmapped
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from recast.config import OrchestrationParams, Params
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


def mapped(task: Task, params: Params) -> Callable[[Any, list[Any]], list[Any]] | None:
    """(fixed, items) -> [task(fixed, item) for each item], as Prefect task mapping on the
    runner; None for the local default, where the library runs the items in-process."""
    if params.orchestration.runner == "local":
        return None
    return lambda fixed, items: task.map(unmapped(fixed), items).result()
