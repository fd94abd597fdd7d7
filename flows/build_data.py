"""Flow `build-data`: ingest -> pairs -> validate -> split, as `dvc repro` runs them."""

from __future__ import annotations

from typing import Any

from prefect import flow

from recast.config import load_params
from tasks import data


@flow(name="build-data")
def build_data(params_file: str = "params.yaml", overrides: list[str] | None = None) -> dict:
    p = load_params(params_file, overrides or [])
    metrics: dict[str, Any] = {"ingest": data.ingest(p.ingest)}
    metrics["pairs"] = data.build_pairs(p.ingest.out_dir, p.pairs)
    metrics["validate"] = data.validate(p.pairs.out_dir, p.validate, p.pairs.languages)
    metrics["split"] = data.split(p.pairs.out_dir, p.split)
    return metrics


if __name__ == "__main__":
    build_data()
