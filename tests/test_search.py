"""CMA-ES search mechanics on a tiny random LM: resume after SIGKILL, and bad input."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES

from recast import io
from recast.config import CmaesParams, GeneratorParams
from recast.data import hh_rlhf
from recast.data.raw import read_records
from recast.errors import GeneratorError, RecastError
from recast.generator.local import LocalGenerator
from recast.records import PreferencePair, pairs_table
from recast.refiner.model import Refiner
from recast.search import STATE, Fitness, SearchError, run_search

BIN = Path(sys.executable).parent


def real_pairs(n: int) -> list[PreferencePair]:
    path = SAMPLES / "hh-rlhf" / "helpful-base-test.jsonl.gz"
    pairs = [p for p in hh_rlhf.to_pairs(read_records(path)) if isinstance(p, PreferencePair)]
    return pairs[:n]


CMAES = CmaesParams(
    iterations=3, delta_sigma=0.3, max_target_tokens=24, batch_rows=32, stop_on_flat_fitness=False
)  # a random tiny LM may well be flat


def test_empty_d_es_is_an_error(tiny_lm: str, tmp_path: Path) -> None:
    refiner = Refiner.load(tiny_lm)
    generator = LocalGenerator(GeneratorParams(model=tiny_lm))
    with pytest.raises(SearchError, match="D_es is empty"):
        run_search(refiner, generator, [], CMAES, tmp_path, 8)


def test_search_writes_result_and_its_best_is_the_fitness_of_xi_star(
    tiny_lm: str, tmp_path: Path
) -> None:
    """ξ* and F(ξ*) belong together: F (Eq. 11) of the written ξ*, computed afresh, is the
    best fitness the search reports (a search that kept the wrong candidate fails here)."""
    refiner = Refiner.load(tiny_lm)
    generator = LocalGenerator(GeneratorParams(model=tiny_lm))
    rows: list[dict] = []
    pairs = real_pairs(6)
    result, space = run_search(
        refiner, generator, pairs, CMAES, tmp_path, 8, on_iteration=rows.append
    )
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    assert space.popsize == 7 and len(result.xi_star) == 32
    assert result.best_fitness == min(r["best"] for r in rows)
    assert json.loads((tmp_path / "result.json").read_text())["xi_star"] == result.xi_star
    assert all(np.isfinite([r["best"], r["mean"], r["sigma"]]).all() for r in rows)
    (again,) = Fitness(refiner, generator, pairs, space, CMAES, 8)([np.asarray(result.xi_star)])
    assert again == pytest.approx(result.best_fitness, abs=1e-4)


def test_checkpoint_from_another_configuration_is_refused(tiny_lm: str, tmp_path: Path) -> None:
    refiner = Refiner.load(tiny_lm)
    generator = LocalGenerator(GeneratorParams(model=tiny_lm))
    pairs = real_pairs(4)
    run_search(refiner, generator, pairs, CMAES, tmp_path, 8)
    other = CmaesParams(**{**CMAES.__dict__, "d_z": 8})
    with pytest.raises(SearchError, match="different configuration"):
        run_search(refiner, generator, pairs, other, tmp_path, 8)
    with pytest.raises(SearchError, match="different configuration"):
        run_search(refiner, generator, pairs[:3], CMAES, tmp_path, 8)
    (tmp_path / STATE).write_bytes(b"\x80\x04 not a pickle")
    with pytest.raises(SearchError, match="unreadable CMA-ES checkpoint"):
        run_search(refiner, generator, pairs, CMAES, tmp_path, 8)


class NaNGenerator(LocalGenerator):
    def score(self, prompts: list[str], targets: list[str]) -> list[float]:
        return [float("nan")] * len(prompts)


def test_nan_fitness_is_an_error_not_a_silent_nan(tiny_lm: str, tmp_path: Path) -> None:
    refiner = Refiner.load(tiny_lm)
    generator = NaNGenerator(GeneratorParams(model=tiny_lm))
    with pytest.raises(SearchError, match="non-finite fitness"):
        run_search(refiner, generator, real_pairs(3), CMAES, tmp_path, 8)


class DyingGenerator(LocalGenerator):
    """Scores normally for `calls` score() calls, then fails as a dead endpoint does."""

    def __init__(self, params: GeneratorParams, calls: int) -> None:
        super().__init__(params)
        self.calls = calls

    def score(self, prompts: list[str], targets: list[str]) -> list[float]:
        self.calls -= 1
        if self.calls < 0:
            raise GeneratorError(
                "generator http: POST http://127.0.0.1:9/v1/completions failed "
                "after 5 attempts: connection failed"
            )
        return super().score(prompts, targets)


def test_endpoint_dying_mid_search_fails_clearly_and_resumes(tiny_lm: str, tmp_path: Path) -> None:
    refiner = Refiner.load(tiny_lm)
    pairs = real_pairs(4)
    params = GeneratorParams(model=tiny_lm)
    with pytest.raises(GeneratorError, match="failed after 5 attempts"):
        run_search(refiner, DyingGenerator(params, calls=3), pairs, CMAES, tmp_path, 8)
    state = pickle.loads((tmp_path / STATE).read_bytes())
    assert len(state["history"]) == 2  # ξ=0 + two iterations scored before the endpoint died
    resumed, _ = run_search(refiner, LocalGenerator(params), pairs, CMAES, tmp_path, 8)
    fresh, _ = run_search(refiner, LocalGenerator(params), pairs, CMAES, tmp_path / "b", 8)
    assert resumed.xi_star == fresh.xi_star


def test_http_generator_with_dead_endpoint_raises_generator_error(
    tiny_lm: str, tmp_path: Path
) -> None:
    from recast.generator.http import HttpGenerator

    refiner = Refiner.load(tiny_lm)
    dead = HttpGenerator(
        GeneratorParams(
            backend="http",
            endpoints=["http://127.0.0.1:9/v1"],
            max_retries=1,
            backoff_s=0.01,
            timeout_s=1,
        )
    )
    with pytest.raises(GeneratorError, match="connection failed"):
        run_search(refiner, dead, real_pairs(2), CMAES, tmp_path, 8)


def _search_cmd(tiny_lm: str, split_dir: Path, out: Path) -> list[str]:
    sets = [
        f"split.out_dir={split_dir}",
        f"refiner.model={tiny_lm}",
        f"generator.model={tiny_lm}",
        f"cmaes.out_dir={out}",
        "cmaes.iterations=6",
        "cmaes.delta_sigma=0.3",
        "cmaes.max_target_tokens=24",
        "refiner.max_refined_tokens=8",
        "cmaes.stop_on_flat_fitness=false",
    ]
    cmd = [str(BIN / "recast"), "search", "--params", "none.yaml"]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def test_sigkill_mid_search_then_resume_gives_the_same_xi_star(
    tiny_lm: str, tmp_path: Path
) -> None:
    split_dir = tmp_path / "splits"
    pairs = real_pairs(10)
    io.write_parquet(split_dir / "es.parquet", pairs_table(pairs[:6]))
    io.write_parquet(split_dir / "dev.parquet", pairs_table(pairs[6:]))
    (tmp_path / "none.yaml").write_text("{}\n")
    env = {**os.environ, "COLUMNS": "120"}

    def run_cli(out: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            _search_cmd(tiny_lm, split_dir, out),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    whole = run_cli(tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-2000:]

    killed_out = tmp_path / "killed"
    proc = subprocess.Popen(
        _search_cmd(tiny_lm, split_dir, killed_out),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once at least two iterations are checkpointed
        try:
            if len(pickle.loads((killed_out / STATE).read_bytes())["history"]) >= 2:
                break
        except (FileNotFoundError, EOFError, pickle.UnpicklingError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(pickle.loads((killed_out / STATE).read_bytes())["history"])
    assert 2 <= done < 6, "the kill must land mid-search"
    assert not (killed_out / "result.json").exists()

    resumed = run_cli(killed_out)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = json.loads((tmp_path / "whole" / "result.json").read_text())
    b = json.loads((killed_out / "result.json").read_text())
    assert b["xi_star"] == a["xi_star"]
    assert b["best_fitness"] == a["best_fitness"]
    assert [h["best"] for h in b["history"]] == [h["best"] for h in a["history"]]


def test_refiner_prompt_over_context_is_a_clear_error(tiny_lm: str, tmp_path: Path) -> None:
    refiner = Refiner.load(tiny_lm)
    refiner.max_prompt_tokens = 64
    generator = LocalGenerator(GeneratorParams(model=tiny_lm))
    long = real_pairs(1)[0]
    huge = PreferencePair(long.source, long.prompt * 40, long.chosen, long.rejected)
    with pytest.raises(RecastError, match="refiner prompt is .* tokens, over the limit"):
        run_search(refiner, generator, [huge], CMAES, tmp_path, 8)


@pytest.mark.parametrize(("popsize", "expected"), [("4", 4), ("pycma", 14)])
def test_popsize_from_params_sets_the_population(tiny_lm: str, popsize: str, expected: int) -> None:
    """--set cmaes.popsize=4 arrives as an int (config), a rule as its name."""
    from recast.config import load_params
    from recast.search import make_space

    params = load_params(None, [f"cmaes.popsize={popsize}"]).cmaes
    assert make_space(Refiner.load(tiny_lm), real_pairs(2), params).popsize == expected
