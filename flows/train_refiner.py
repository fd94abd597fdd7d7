"""Flow `train-refiner`: data stages, round 1's CMA-ES search, Algorithm 1's rounds, the
baselines, the evaluation, then the registry gate (with tracking on). The search and the
rounds are subflows so that each runs its candidate-fitness tasks on the task runner
params.orchestration names (local, Dask or Ray)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.build_data import build_data
from flows.evaluate import evaluate
from flows.train_baselines import train_baselines
from recast.config import load_params
from recast.stages import refiner as stages
from tasks import refiner, runners


@flow(name="cmaes-search")
def cmaes_search(params_file: str = "params.yaml", overrides: list[str] | None = None) -> dict:
    """Stage `search`: round 1's search; resumes from its checkpoint when a worker restarts it."""
    p = load_params(params_file, overrides or [])
    return stages.search(p, resume=True, fan_out=refiner.fan_out(p))


@flow(name="train-rounds")
def train_rounds(params_file: str = "params.yaml", overrides: list[str] | None = None) -> dict:
    """Stage `train`: Algorithm 1's rounds (search -> pseudo-labels x* -> fine-tune), resuming
    finished rounds."""
    p = load_params(params_file, overrides or [])
    return stages.train(p, resume=True, fan_out=refiner.fan_out(p))


@flow(name="warm-start")
def warm_start(params_file: str = "params.yaml", overrides: list[str] | None = None) -> dict:
    """The teacher's rewrites (reused where bpo.rewrites already holds them) and ρ_sft, the
    refiner that search and training start from with refiner.warm_start."""
    p = load_params(params_file, overrides or [])
    return {"rewrites": refiner.rewrites(p), "warm_start": refiner.warmstart(p)}


@flow(name="train-refiner")
def train_refiner(
    params_file: str = "params.yaml", overrides: list[str] | None = None
) -> dict[str, Any]:
    p = load_params(params_file, overrides or [])
    runner = runners.task_runner(p.orchestration)
    data = build_data(params_file, overrides)
    warm = warm_start(params_file, overrides) if p.refiner.warm_start else None
    search = None
    if p.cmaes.enabled:
        search = cmaes_search.with_options(task_runner=runner)(params_file, overrides)
    trained = train_rounds.with_options(task_runner=runner)(params_file, overrides)
    baselines = train_baselines(params_file, overrides)
    evaluated = evaluate(params_file, overrides)
    promoted = refiner.promote(p) if p.tracking.enabled else None
    return {
        "data": data,
        "warm_start": warm,
        "search": search,
        "rounds": trained["rounds"],
        "baselines": baselines,
        "evaluate": evaluated,
        "promote": promoted,
    }


if __name__ == "__main__":
    train_refiner()
