"""Prefect flows run the library's functions and produce what DVC produces."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SAMPLES

from recast import io
from recast.config import load_params
from recast.data import stages


@pytest.fixture(scope="module")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_build_data_flow_matches_the_stage_functions(
    prefect_harness: None, in_tmp: Path, smollm2: str
) -> None:
    from flows.build_data import build_data

    overrides = [f"ingest.root={SAMPLES}"]
    flow_metrics = build_data(params_file="params.yaml", overrides=overrides)
    flow_hashes = {f.name: io.sha256_file(f) for f in Path("data/splits").glob("*.parquet")}
    direct = stages.build(load_params("params.yaml", overrides))
    direct_hashes = {f.name: io.sha256_file(f) for f in Path("data/splits").glob("*.parquet")}
    assert flow_metrics == direct
    assert flow_hashes == direct_hashes and len(flow_hashes) == 4


def test_train_refiner_flow_runs_search_and_rounds(
    prefect_harness: None, in_tmp: Path, tiny_lm: str
) -> None:
    from flows.train_refiner import train_refiner

    overrides = [
        f"ingest.root={SAMPLES}",
        "split.es_size=4",
        f"refiner.model={tiny_lm}",
        f"generator.model={tiny_lm}",
        "refiner.rounds=1",
        "refiner.train_size=4",
        "refiner.max_refined_tokens=6",
        "cmaes.iterations=2",
        "cmaes.max_target_tokens=16",
        "cmaes.stop_on_flat_fitness=false",
    ]
    result = train_refiner(params_file="params.yaml", overrides=overrides)
    # round 1 reused the search task's ξ* instead of searching again
    assert result["rounds"][0]["best_fitness"] == result["search"]["es_fitness_at_xi_star"]
    assert result["rounds"][0]["xi_star_norm"] == result["search"]["xi_star_norm"]
    assert (in_tmp / "runs" / "train" / "round-1" / "refiner" / "config.json").exists()
