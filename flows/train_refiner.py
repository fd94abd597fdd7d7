"""Flow `train-refiner`: data stages, then round 1's search, then Algorithm 1's rounds."""

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
    rounds = refiner.train(p)
    return {"data": data, "search": search, "rounds": rounds["rounds"]}


if __name__ == "__main__":
    train_refiner()
