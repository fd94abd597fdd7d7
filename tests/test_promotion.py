"""The registry gate: challenger vs champion, the champion alias, and loading from the registry."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from test_search import real_pairs
from typer.testing import CliRunner

from recast import io
from recast.cli import app
from recast.config import Params, load_params
from recast.errors import RecastError
from recast.promotion import decide
from recast.records import pairs_table
from recast.refiner.model import Refiner
from recast.stages.promote import promote
from recast.tracking import Tracker, trace


def test_decide_needs_a_gain_above_the_margin() -> None:
    assert decide(3.0, None, 0.1, lower_is_better=True).promote  # no champion yet
    assert decide(2.8, 3.0, 0.1, lower_is_better=True).promote  # 0.2 nats better
    assert not decide(2.95, 3.0, 0.1, lower_is_better=True).promote  # 0.05: within the margin
    assert not decide(3.1, 3.0, 0.0, lower_is_better=True).promote  # worse
    assert not decide(3.0, 3.0, 0.0, lower_is_better=True).promote  # a tie keeps the champion
    assert decide(0.3, 0.1, 0.1, lower_is_better=False).promote  # win - loss: higher is better


@pytest.fixture
def registry(in_tmp: Path, tiny_lm: str) -> Params:
    io.write_parquet(in_tmp / "data" / "splits" / "dev.parquet", pairs_table(real_pairs(3)))
    return load_params(
        None,
        [
            "tracking.enabled=true",
            f"tracking.uri=sqlite:///{in_tmp / 'mlruns.db'}",
            f"tracking.artifacts={in_tmp / 'artifacts'}",
            f"refiner.model={tiny_lm}",
            f"generator.model={tiny_lm}",
            "refiner.max_refined_tokens=6",
            "cmaes.max_target_tokens=16",
        ],
    )


def register(params: Params, folder: str) -> str:
    """What the `train` stage does at its end: log the refiner, register it as challenger."""
    tracker = Tracker(params)
    refiner = Refiner.load(folder)
    with tracker.run("train") as run_id:
        uri = tracker.log_refiner(refiner.model, refiner.tokenizer, Path(folder))
        version = tracker.register(uri, params.registry.name, {"train_run_id": run_id})
    assert version is not None
    return version


def test_champion_moves_only_when_the_challenger_wins(registry: Params, tiny_lm: str) -> None:
    scores: dict[str, float] = {}

    calls: list[str] = []

    def scripted(params: Params, uri: str) -> float:  # fitness: lower is better
        calls.append(uri.rsplit("/", 1)[1])
        return scores[uri.rsplit("/", 1)[1]]

    scores["1"] = 3.0
    assert register(registry, tiny_lm) == "1"
    first = promote(registry, scripted)
    assert first["promoted"] and first["champion"] == "1" and first["reason"] == "no champion yet"

    scores["2"] = 3.2  # worse: the champion stays
    register(registry, tiny_lm)
    lost = promote(registry, scripted)
    assert not lost["promoted"] and lost["champion"] == "1"
    assert (lost["challenger_score"], lost["champion_score"]) == (3.2, 3.0)

    scores["3"] = 2.5  # better: the champion moves
    register(registry, tiny_lm)
    won = promote(registry, scripted)
    assert won["promoted"] and won["champion_before"] == "1" and won["champion"] == "3"
    # DVC's metrics file holds what follows from the challenger; the decision, which depends
    # on what the registry held, is in the run log
    metrics = io.read_json(Path("metrics") / "promote.json")
    assert metrics == {
        "model": "recast-refiner", "gate_metric": "dev_fitness", "gate_split": "dev",
        "challenger_score": 2.5,
    }  # fmt: skip
    assert {**metrics, **io.read_json(Path("runs/log/promote.json"))} == won

    assert calls == ["1", "2", "3"]  # each version scored once: the champion's came from its tags
    calls.clear()
    again = promote(registry, scripted)  # nothing new to compare, nothing scored again
    assert not again["promoted"] and again["champion"] == "3"
    assert calls == [] and again["challenger_score"] == 2.5
    other = dataclasses.replace(
        registry, generator=dataclasses.replace(registry.generator, max_length=1024)
    )
    promote(other, scripted)  # another generator setting: the score is made afresh
    assert calls == ["3"]
    assert io.read_json(Path("metrics") / "promote.json") == metrics  # the same bytes again

    lineage = trace(registry.tracking, "models:/recast-refiner@champion")
    assert lineage["model_version"]["version"] == "3"
    assert set(lineage["model_version"]["aliases"]) == {"champion", "challenger"}
    assert lineage["run"]["name"] == "train" and lineage["params_hash"] is None
    # by name: the latest run of that name (what reports/eval/report.md points at)
    assert trace(registry.tracking, "train")["run"]["id"] == lineage["run"]["id"]
    with pytest.raises(RecastError, match="no run id, registry version or run named 'evaluate'"):
        trace(registry.tracking, "evaluate")


def test_real_gate_scores_both_refiners_and_refine_loads_the_champion(
    registry: Params, tiny_lm: str, minilm: str, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recast.models.load import resolve

    # the rewrite guard's encoder by its folder: the packaged cache is redirected next
    encoder = resolve(minilm).path
    registry.refiner.check_encoder = encoder
    monkeypatch.setenv("RECAST_CACHE", str(in_tmp / "cache"))  # registry downloads land here
    register(registry, tiny_lm)
    first = promote(registry)  # the real gate: F of the unbiased refiner on the dev split
    assert first["promoted"] and first["challenger_score"] > 0
    register(registry, tiny_lm)  # the same weights again: no gain, the champion stays
    second = promote(registry)
    assert not second["promoted"] and second["champion"] == "1"
    assert second["challenger_score"] == pytest.approx(second["champion_score"], abs=1e-5)

    uri = registry.tracking.uri
    result = CliRunner().invoke(
        app,
        [
            "refine",
            "How do I boil an egg?",
            "--set",
            f"tracking.uri={uri}",
            "--set",
            "refiner.max_refined_tokens=6",
            "--set",
            f"refiner.check_encoder={encoder}",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip()
    assert (in_tmp / "cache" / "registry").is_dir()


def test_promote_without_a_challenger_says_so(registry: Params) -> None:
    with pytest.raises(Exception, match="has the alias 'challenger'"):
        promote(registry)
