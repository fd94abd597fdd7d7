"""The main job's summary (`recast main`): the example rule and layout on real BPO-test records
(x, BPO's optimized x', the good and bad answers), and the stage end to end with a tiny LM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SAMPLES, tiny_eval
from typer.testing import CliRunner

from recast.cli import app
from recast.config import load_params
from recast.evaluation.summary import examples, render, side_by_side
from recast.stages import data as stages


@pytest.fixture(scope="module")
def bpo() -> list[dict[str, str]]:
    """BPO-test records whose optimized prompt differs from the prompt (a real rewrite)."""
    rows = json.loads((SAMPLES / "eval-samples" / "bpo_test.json").read_text())
    return [r for r in rows if r["optimized_prompt"].strip() != r["prompt"].strip()]


def answered(rows: list[dict[str, str]], verdicts: list[str]) -> dict[str, object]:
    """One set as main_stage reads it back: ORG answered x with bad_res, ours sent x' (the
    optimized prompt where the verdict is a rewrite, x otherwise) and got good_res."""
    sent = [
        r["optimized_prompt"] if v == "rewrite" else r["prompt"]
        for r, v in zip(rows, verdicts, strict=True)
    ]
    return {
        "prompts": [r["prompt"] for r in rows],
        "org": {"answers": [r["bad_res"] for r in rows]},
        "ours": {"answers": [r["good_res"] for r in rows], "sent": sent, "verdicts": verdicts},
    }


def test_examples_take_the_first_rewrite_of_each_set_in_turn(bpo: list[dict[str, str]]) -> None:
    a, b = bpo[:4], bpo[4:8]
    sets = {
        "a": answered(a, ["copy", "rewrite", "rewrite", "answers"]),
        "b": answered(b, ["drift", "degenerate", "rewrite", "rewrite"]),
    }
    outcomes = {"a": ["tie", "win", "loss", None], "b": ["tie", "tie", "loss", "win"]}
    chosen = examples(sets, outcomes, 3)
    assert [(e.set, e.x) for e in chosen] == [
        ("a", a[1]["prompt"]),
        ("b", b[2]["prompt"]),
        ("a", a[2]["prompt"]),
    ]
    first = chosen[0]
    assert first.x_prime == a[1]["optimized_prompt"] and first.outcome == "win"
    assert first.answer_x == a[1]["bad_res"] and first.answer_x_prime == a[1]["good_res"]
    assert examples(sets, outcomes, 10)[3:] == [examples(sets, outcomes, 10)[3]]  # 4 rewrites
    assert examples({"a": answered(a, ["copy"] * 4)}, {"a": [None] * 4}, 3) == []


def test_side_by_side_keeps_every_word_within_the_width(bpo: list[dict[str, str]]) -> None:
    left, right = bpo[0]["good_res"], bpo[0]["bad_res"]
    lines = side_by_side(left, right, 80, ("left", "right"))
    assert all(len(line) <= 80 for line in lines)
    cols = [line.split("│") for line in lines]
    got_left = " ".join(c[0] for c in cols[1:]).split()
    got_right = " ".join(c[1] for c in cols[1:] if len(c) > 1).split()
    assert got_left == left.split() and got_right == right.split()


def test_render_states_the_interval_verdict(bpo: list[dict[str, str]]) -> None:
    data = {"sources": {"hh_rlhf": {"pairs": 300}}, "sizes": {"train": 5, "es": 2, "dev": 1}}
    train = {"rounds": [{"round": 1, "fitness_at_zero": 2.5, "best_fitness": 2.0,
                         "dev_fitness_at_zero": 2.6, "dev_fitness_at_xi_star": 2.4,
                         "x_star_rewrite": 3, "x_star_copy": 1, "x_star_drift": 1,
                         "x_star_fallback": 1, "x_star_trained_on": 4}]}  # fmt: skip
    agreement = {"bpo_test": {"agreement": 0.85, "length_baseline": 0.75,
                              "balanced_agreement": 0.5, "balanced_length_baseline": 0.17,
                              "balanced_n": 6}}  # fmt: skip

    def cell(value: float, ci: tuple[float, float]) -> dict[str, object]:
        return {"set": "all", "system": "ours", "versus": "org", "n": 20, "unparsed": 0,
                "win": 30.0, "loss": 20.0, "tie": 50.0,
                "win_minus_loss": {"value": value, "ci95": ci,
                                   "excludes_zero": ci[0] > 0 or ci[1] < 0}}  # fmt: skip

    sets = {"a": answered(bpo[:2], ["rewrite", "copy"])}
    chosen = examples(sets, {"a": ["loss", "tie"]}, 3)
    for ci, words in (((-10.0, 30.0), "no detectable difference"), ((2.0, 18.0), "ours ahead")):
        result = {"prompts": {"a": 2}, "cells": [cell(10.0, ci)],
                  "judge": {"name": "ensemble", "agreement": agreement},
                  "rewrites": {"ours": {"all": {"n": 2, "rewrite": 0.5, "copy": 0.5,
                                                "harmful": 0.0, "fallback": 0.0}}}}  # fmt: skip
        text = render(data, train, None, result, chosen, 90)
        assert words in text
        assert "win 30% / loss 20% / tie 50%" in text and "2.500 → 2.000" in text
        assert "rewrite 3, copy 1, harmful 1; p_im fine-tuned on 4 of them" in text
        assert "agrees 85% (longer answer wins: 75%" in text
        assert "Example 1 (a; judge: ours loss)" in text and "Example 2" not in text
        assert bpo[0]["optimized_prompt"].split()[0] in text
        assert max(len(line) for line in text.splitlines()) <= 90


def test_main_stage_end_to_end(in_tmp: Path, tiny_lm: str, minilm: str) -> None:
    """Train (1 round), the reward model, then `recast main`: the summary's figures are the
    ones results.json and metrics/main.json hold."""
    overrides = [
        f"ingest.root={SAMPLES}",
        f"generator.model={tiny_lm}",
        f"refiner.model={tiny_lm}",
        "refiner.warm_start=false",
        "refiner.rounds=1",
        "refiner.train_size=4",
        "refiner.batch_size=2",
        "refiner.max_refined_tokens=6",
        "refiner.guard=false",  # the tiny random LM writes nothing the check calls a rewrite
        "cmaes.iterations=2",
        "cmaes.max_target_tokens=16",
        "registry.max_pairs=4",
        *tiny_eval(tiny_lm, minilm),
        "evaluate.judge_mode=ensemble",  # params.yaml's: a verdict for every prompt
        "tracking.enabled=false",
    ]
    stages.build(load_params("params.yaml", overrides))
    args = [a for o in overrides for a in ("--set", o)]
    for command in ("train", "reward", "main"):
        result = CliRunner().invoke(app, [command, *args])
        assert result.exit_code == 0, result.output
    summary = (in_tmp / "reports" / "main" / "summary.txt").read_text()
    assert summary.strip() in result.output.replace("\r", "")  # printed as written
    res = json.loads((in_tmp / "reports" / "main" / "results.json").read_text())
    assert [(c["system"], c["versus"]) for c in res["cells"] if c["set"] == "all"] == [
        ("ours", "org")
    ]
    cell = next(c for c in res["cells"] if c["set"] == "all")
    assert f"win {cell['win']:.0f}% / loss {cell['loss']:.0f}% / tie {cell['tie']:.0f}%" in summary
    flat = json.loads((in_tmp / "metrics" / "main.json").read_text())
    assert flat["all/ours_vs_org/win"] == round(cell["win"], 2)
    assert not (in_tmp / "metrics" / "eval.json").exists()  # the evaluate stage's file untouched
    assert "Round 1" in summary and "evaluation prompts: bpo_test 2" in summary
