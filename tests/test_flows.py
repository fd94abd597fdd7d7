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
