"""`recast reward`, `recast eval` and `recast report` end to end on real evaluation prompts,
with a tiny random LM as generator, refiner and judge (mechanics, not quality)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SAMPLES, tiny_eval
from typer.testing import CliRunner

from recast.cli import app
from recast.config import load_params
from recast.stages import data as stages


@pytest.fixture
def eval_overrides(in_tmp: Path, tiny_lm: str, minilm: str) -> list[str]:
    overrides = [
        f"ingest.root={SAMPLES}",
        f"generator.model={tiny_lm}",
        f"refiner.model={tiny_lm}",
        "refiner.max_refined_tokens=6",
        f"evaluate.refiner={tiny_lm}",
        *tiny_eval(tiny_lm, minilm),
        "tracking.enabled=false",
    ]
    stages.build(load_params("params.yaml", overrides))
    return overrides


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def test_reward_dpo_eval_report_end_to_end(
    eval_overrides: list[str], in_tmp: Path, tiny_lm: str
) -> None:
    code, output = run("reward", *sets(eval_overrides))
    assert code == 0, output
    reward = json.loads((in_tmp / "metrics" / "reward.json").read_text())
    assert reward["train_pairs"] == 8 and 0.0 <= reward["dev_accuracy"] <= 1.0

    code, output = run("dpo", *sets(eval_overrides))
    assert code == 0, output
    dpo = json.loads((in_tmp / "metrics" / "dpo.json").read_text())
    assert dpo["pairs"] == 4 and dpo["steps"] == 2 and dpo["final_loss"] > 0
    assert (in_tmp / "runs" / "dpo" / "model" / "config.json").exists()

    # the tiny random teacher writes no rewrite the check keeps: BPO's published rule here
    # (the guarded rule is tested on real rewrites in test_teacher.py)
    code, output = run("bpo", *sets([*eval_overrides, "refiner.guard=false"]))
    assert code == 0, output
    bpo = json.loads((in_tmp / "metrics" / "bpo.json").read_text())
    assert bpo["pairs"] == 4 and bpo["optimized_kept"] >= 1 and bpo["final_loss"] > 0
    assert bpo["teacher_dropped"] == 4 - bpo["optimized_kept"] and not bpo["guard"]

    code, output = run("prompter", *sets(eval_overrides))
    assert code == 0, output

    # the ablations' refiners, where `dvc repro ablate` puts them (here: the tiny LM as is)
    from recast.refiner.model import Refiner
    from recast.training import save_refiner

    for variant in ("no-cmaes", "omega-0"):
        save_refiner(Refiner.load(tiny_lm), in_tmp / "runs/ablations" / variant / "round-2/refiner")

    code, output = run("eval", *sets(eval_overrides))
    assert code == 0, output
    result = json.loads((in_tmp / "reports" / "eval" / "results.json").read_text())
    assert result["prompts"] == {"bpo_test": 2, "dolly_eval": 2, "vicuna_eval": 2,
                                 "self_instruct_eval": 2}  # fmt: skip
    versus = ("org", "bon", "sr", "bpo", "dpo", "no_cmaes", "omega_0", "alignpro")
    pairs = [("ours", v) for v in versus] + [("alignpro", "org")]
    cells = {(c["system"], c["versus"], c["set"]) for c in result["cells"]}
    assert cells == {(a, b, s) for a, b in pairs for s in [*result["prompts"], "all"]}
    for cell in result["cells"]:
        assert cell["n"] == (8 if cell["set"] == "all" else 2)
        parsed = cell["n"] - cell["unparsed"]
        if parsed:
            assert cell["win"] + cell["loss"] + cell["tie"] == pytest.approx(100.0)
        else:  # a random judge writes no [[A]]/[[B]]/[[C]]: counted, never guessed
            assert cell["win"] is None and cell["ci95"]["win"] is None
    systems = result["systems"]
    assert systems["org"]["calls"] == 8 and systems["bon"]["calls"] == 16  # N calls a prompt
    assert 8 <= systems["sr"]["calls"] <= 4 * 8 * 2  # 4 starts a prompt, then fewer survive
    assert set(result["judge"]["agreement"]) == {"bpo_test", "hh_rlhf", "dev_split"}
    assert "ours vs ORG" in output

    code, output = run("report", *sets(eval_overrides))
    assert code == 0, output
    report = (in_tmp / "reports" / "eval" / "report.md").read_text()
    assert "ours vs BoN" in report and "ours vs ours without CMA-ES" in report
    assert "Align-Pro vs ORG" in report
    assert "reward.png" in report
    assert (in_tmp / "reports" / "eval" / "winrates.png").stat().st_size > 0
    assert "<table>" in (in_tmp / "reports" / "eval" / "report.html").read_text()

    # a second run reuses every system's answers (a killed run resumes the same way)
    from recast.evaluation.stages import evaluate_stage

    logs: list[str] = []
    evaluate_stage(load_params("params.yaml", eval_overrides), logs.append)
    assert sum("answers from an earlier run" in m for m in logs) == 9 * 4  # systems x sets


@pytest.mark.parametrize("mode", ["pointwise", "reward", "ensemble"])
def test_score_judges_always_give_a_verdict(
    eval_overrides: list[str], in_tmp: Path, mode: str
) -> None:
    from recast.evaluation.agreement import longer_wins
    from recast.evaluation.stages import evaluate_stage, labelled_pairs, report_stage, reward_stage

    params = load_params(
        "params.yaml",
        [*eval_overrides, f"evaluate.judge_mode={mode}", "evaluate.systems=[org, ours]"],
    )
    reward_stage(params)
    result = evaluate_stage(params)
    for cell in result["cells"]:
        assert cell["unparsed"] == 0
        assert cell["win"] + cell["loss"] + cell["tie"] == pytest.approx(100.0)
        wml = cell["win_minus_loss"]
        assert wml["value"] == pytest.approx(cell["win"] - cell["loss"])
        assert wml["ci95"][0] <= wml["value"] <= wml["ci95"][1]
        assert 0.0 <= cell["lc_win"] <= 100.0
    hh = result["judge"]["agreement"]["hh_rlhf"]
    assert hh["position_consistency"] is None  # one answer at a time: no order to flip
    rule = [longer_wins(p.chosen, p.rejected) for p in labelled_pairs(params)["hh_rlhf"]]
    assert hh["length_baseline"] == pytest.approx(sum(r is True for r in rule) / len(rule))
    ours = result["rewrites"]["ours"]["all"]  # the tiny random refiner: verdicts of its x'
    assert ours["n"] == 8 and set(result["rewrites"]) == {"ours"}  # org sends x: no verdicts
    assert ours["rewrite"] + ours["copy"] + ours["harmful"] == pytest.approx(1.0)
    assert ours["fallback"] == pytest.approx(ours["harmful"])  # refiner.guard is on
    report = (in_tmp / report_stage(params)["report"]).read_text()
    assert "longer answer wins" in report and "win − loss" in report
    assert "fell back" in report


def test_eval_without_a_reward_model_says_what_to_run(eval_overrides: list[str]) -> None:
    code, output = run("eval", *sets(eval_overrides))
    assert code == 1 and "run `recast reward` first" in output
