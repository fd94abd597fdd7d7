"""Prefect flows run the library's functions and produce what DVC produces."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import SAMPLES, tiny_eval

from recast import io
from recast.config import load_params
from recast.stages import data as stages

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def search_overrides(tiny_lm: str) -> list[str]:
    """A 2-iteration CMA-ES search on 4 pairs with the tiny LM as refiner and generator."""
    return [
        f"ingest.root={SAMPLES}",
        "split.es_size=4",
        f"refiner.model={tiny_lm}",
        f"generator.model={tiny_lm}",
        "refiner.max_refined_tokens=6",
        "refiner.warm_start=false",  # ρ_sft needs a real teacher (test_teacher.py)
        "cmaes.iterations=2",
        "cmaes.max_target_tokens=16",
        "cmaes.stop_on_flat_fitness=false",
        "tracking.enabled=false",
    ]


def sets_overrides(tiny_lm: str, minilm: str, systems: str) -> list[str]:
    """The four evaluation sets, 2 prompts each, answered by `systems` and judged by the tiny LM."""
    return [
        f"evaluate.refiner={tiny_lm}",
        *tiny_eval(tiny_lm, minilm),
        f"evaluate.systems={systems}",
    ]


def run_on_runner(flow: Any, overrides: list[str]) -> dict:
    """The subflow on the task runner its params' orchestration section names."""
    from tasks.runners import task_runner

    runner = task_runner(load_params("params.yaml", overrides).orchestration)
    return flow.with_options(task_runner=runner)("params.yaml", overrides)


def on_dask(cluster: Any) -> list[str]:
    return ["orchestration.runner=dask", f"orchestration.address={cluster.scheduler_address}"]


def test_build_data_flow_matches_the_stage_functions(
    prefect_harness: None, in_tmp: Path, smollm2_tokenizer: str
) -> None:
    from flows.build_data import build_data

    overrides = [f"ingest.root={SAMPLES}"]
    flow_metrics = build_data(params_file="params.yaml", overrides=overrides)
    flow_hashes = {f.name: io.sha256_file(f) for f in Path("data/splits").glob("*.parquet")}
    direct = stages.build(load_params("params.yaml", overrides))
    direct_hashes = {f.name: io.sha256_file(f) for f in Path("data/splits").glob("*.parquet")}
    assert flow_metrics == direct
    assert flow_hashes == direct_hashes and len(flow_hashes) == 4


def test_train_refiner_flow_runs_search_rounds_evaluation_and_promotion(
    prefect_harness: None, in_tmp: Path, tiny_lm: str, minilm: str
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
        "refiner.warm_start=false",  # ρ_sft needs a real teacher (test_teacher.py)
        # the tiny random teacher writes no rewrite the check keeps, so a guarded BPO stage
        # would have no data: the published rule here (the guard: test_teacher, test_guard)
        "refiner.guard=false",
        "cmaes.iterations=2",
        "cmaes.max_target_tokens=16",
        "cmaes.stop_on_flat_fitness=false",
        *tiny_eval(tiny_lm, minilm),
    ]
    result = train_refiner(params_file="params.yaml", overrides=overrides)
    # round 1 reused the search task's ξ* instead of searching again
    assert result["rounds"][0]["best_fitness"] == result["search"]["es_fitness_at_xi_star"]
    assert result["rounds"][0]["xi_star_norm"] == result["search"]["xi_star_norm"]
    assert (in_tmp / "runs" / "train" / "round-1" / "refiner" / "config.json").exists()
    assert (in_tmp / "reports" / "eval" / "report.md").exists()  # evaluated the new refiner
    assert result["promote"]["promoted"] and result["promote"]["champion"] == "1"


def test_population_fans_out_over_a_local_dask_cluster(
    prefect_harness: None, in_tmp: Path, tiny_lm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 2-process Dask cluster scores the candidates (each worker scores some) and the search
    finds what the single-process default finds."""
    from distributed import Client, LocalCluster

    from flows.train_refiner import cmaes_search
    from recast import distributed

    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # workers unpickle tasks.refiner by name
    base = search_overrides(tiny_lm)
    stages.build(load_params("params.yaml", base))
    local = cmaes_search("params.yaml", [*base, "cmaes.out_dir=runs/search-local"])
    with (
        LocalCluster(n_workers=2, processes=True, threads_per_worker=1) as cluster,
        Client(cluster) as client,
    ):
        spread = run_on_runner(
            cmaes_search, [*base, "cmaes.out_dir=runs/search-dask", *on_dask(cluster)]
        )
        served = client.run(distributed.served)
    assert len(served) == 2
    assert all(count > 0 for _, count in served.values())  # both workers scored candidates
    assert sum(count for _, count in served.values()) == 1 + 2 * local["popsize"]  # F(0) + 2 gens
    for key in ("es_fitness_at_zero", "es_fitness_at_xi_star", "dev_fitness_at_xi_star"):
        assert spread[key] == pytest.approx(local[key], abs=1e-4)


def test_evaluation_sets_fan_out_over_a_local_dask_cluster(
    prefect_harness: None, in_tmp: Path, tiny_lm: str, minilm: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The judge-sets subflow maps the four evaluation sets onto a 2-process Dask cluster: both
    workers answer and judge sets, and the cells equal the single-process default's."""
    from distributed import LocalCluster

    from flows.evaluate import judge_sets
    from recast.evaluation.stages import reward_stage

    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # workers unpickle tasks.evaluation by name
    base = [*search_overrides(tiny_lm), *sets_overrides(tiny_lm, minilm, "[org, ours, bon]")]
    stages.build(load_params("params.yaml", base))
    reward_stage(load_params("params.yaml", base))
    local = judge_sets("params.yaml", [*base, "evaluate.out_dir=reports/eval-local"])
    assert set(local["workers"].values()) == {os.getpid()}  # the default: all sets in this process
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1) as cluster:
        spread = run_on_runner(
            judge_sets, [*base, "evaluate.out_dir=reports/eval-dask", *on_dask(cluster)]
        )
        worker_pids = {w.pid for w in cluster.workers.values()}
    assert set(spread["workers"]) == {"bpo_test", "dolly_eval", "vicuna_eval", "self_instruct_eval"}
    assert set(spread["workers"].values()) == worker_pids  # both workers took sets
    assert spread["cells"] == local["cells"] and spread["systems"] == local["systems"]
    answers = list((in_tmp / "reports/eval-dask/answers").rglob("*.json"))
    assert len(answers) == 4 * 3  # each worker wrote its sets' answers, one file a system


def test_both_fan_outs_run_on_a_local_ray_cluster(
    prefect_harness: None, in_tmp: Path, tiny_lm: str, minilm: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """orchestration.runner=ray with no address: the runner starts a 2-CPU local Ray; the
    candidates and the sets run in its worker processes and give the single-process results."""
    pytest.importorskip("prefect_ray", reason="prefect-ray is the optional recast[ray] extra")
    from flows.evaluate import judge_sets
    from flows.train_refiner import cmaes_search
    from recast import distributed
    from recast.evaluation.stages import reward_stage

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), *sys.path]))  # Ray's workers
    base = [*search_overrides(tiny_lm), *sets_overrides(tiny_lm, minilm, "[org, ours]")]
    stages.build(load_params("params.yaml", base))
    reward_stage(load_params("params.yaml", base))
    local_search = cmaes_search("params.yaml", [*base, "cmaes.out_dir=runs/search-local"])
    local_sets = judge_sets("params.yaml", [*base, "evaluate.out_dir=reports/eval-local"])
    ray = [*base, "orchestration.runner=ray", "orchestration.workers=2"]
    scored_here = distributed.served()[1]
    search = run_on_runner(cmaes_search, [*ray, "cmaes.out_dir=runs/search-ray"])
    assert distributed.served()[1] == scored_here  # every candidate was scored by Ray's workers
    for key in ("es_fitness_at_zero", "es_fitness_at_xi_star", "dev_fitness_at_xi_star"):
        assert search[key] == pytest.approx(local_search[key], abs=1e-4)

    spread = run_on_runner(judge_sets, [*ray, "evaluate.out_dir=reports/eval-ray"])
    assert os.getpid() not in spread["workers"].values()
    assert len(set(spread["workers"].values())) >= 2  # the sets ran side by side
    assert spread["cells"] == local_sets["cells"] and spread["systems"] == local_sets["systems"]


def test_train_prompter_flow_trains_sweeps_reports_and_promotes(
    prefect_harness: None, in_tmp: Path, tiny_lm: str, minilm: str
) -> None:
    from flows.train_prompter import train_prompter

    overrides = [
        f"ingest.root={SAMPLES}",
        f"generator.model={tiny_lm}",
        f"refiner.model={tiny_lm}",
        *tiny_eval(tiny_lm, minilm),
        "registry.max_pairs=3",
    ]
    result = train_prompter(params_file="params.yaml", overrides=overrides)
    assert [r["lambda"] for r in result["sweep"]["rows"]] == [0.0, 0.1]
    assert (in_tmp / "reports" / "prompter" / "report.md").exists()
    promoted = result["promote"]
    assert promoted["model"] == "recast-prompter" and promoted["promoted"]
    assert promoted["gate_metric"] == "dev_reward"
