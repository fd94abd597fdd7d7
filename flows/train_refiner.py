"""Flow `train-refiner`: data stages, round 1's search, Algorithm 1's rounds, then the registry
gate (with tracking on)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.build_data import build_data
from recast.config import load_params
from tasks import refiner


@flow(name="train-refiner")
def train_refiner(
    params_file: str = "params.yaml", overrides: list[str] | None = None
) -> dict[str, Any]:
    p = load_params(params_file, overrides or [])
    data = build_data(params_file, overrides)
    search = refiner.search(p) if p.cmaes.enabled else None
    trained = refiner.train(p)
    promoted = refiner.promote(p) if p.tracking.enabled else None
    return {"data": data, "search": search, "rounds": trained["rounds"], "promote": promoted}


if __name__ == "__main__":
    train_refiner()
