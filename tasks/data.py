"""The four data stages as Prefect tasks: recast.stages.data, as `dvc repro` runs them."""

from __future__ import annotations

from typing import Any

from prefect import task

from recast.config import IngestParams, PairsParams, SplitParams, ValidateParams
from recast.stages import data as stages


@task(name="ingest")
def ingest(params: IngestParams) -> dict[str, Any]:
    return stages.ingest(params)


@task(name="pairs")
def build_pairs(ingest_dir: str, params: PairsParams) -> dict[str, Any]:
    return stages.build_pairs(ingest_dir, params)


@task(name="validate")
def validate(pairs_dir: str, params: ValidateParams, languages: list[str]) -> dict[str, Any]:
    return stages.validate(pairs_dir, params, languages)


@task(name="split")
def split(pairs_dir: str, params: SplitParams) -> dict[str, Any]:
    return stages.split(pairs_dir, params)
