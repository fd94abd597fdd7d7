"""Align-Pro: the reward plumbing (scripted generator and reward model), the KL term, and a
tiny GRPO run of the real training function."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import SAMPLES, tiny_eval
from test_search import real_pairs

from recast.alignpro import (
    GeneratorReward,
    completion_logits,
    gap,
    prompter_kl,
    sequence_kl,
    text_of,
)
from recast.config import load_params
from recast.generator.base import Sampling
from recast.stages import data as stages
from recast.stages.baselines import reward as reward_stage
from recast.stages.common import load_split
from recast.stages.prompter import prompter as train_prompter

PAIRS = real_pairs(4)


class ScriptedGenerator:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def generate(self, prompts: list[str], sampling: Sampling) -> list[str]:
        self.seen += prompts
        return [p.upper() for p in prompts]  # y depends on x' only: a black box

    def score(self, prompts: list[str], targets: list[str]) -> list[float]:
        raise AssertionError("the reward path never scores")

    def close(self) -> None:
        pass


class ScriptedReward:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def score(self, questions: list[str], answers: list[str]) -> list[float]:
        self.seen += list(zip(questions, answers, strict=True))
        return [float(len(a)) for a in answers]


def test_reward_sends_x_prime_to_the_generator_and_scores_x_with_y() -> None:
    generator, reward = ScriptedGenerator(), ScriptedReward()
    fn = GeneratorReward(generator, reward, Sampling(max_new_tokens=8))
    queries = [p.prompt for p in PAIRS]
    x_prime = [f"Please answer in detail: {q}" for q in queries]
    completions = [[{"role": "assistant", "content": x}] for x in x_prime]
    values = fn(prompts=[None] * 4, completions=completions, query=queries)
    assert generator.seen == x_prime  # the generator sees x', never x
    assert reward.seen == [(q, x.upper()) for q, x in zip(queries, x_prime, strict=True)]
    assert values == [float(len(x)) for x in x_prime] and fn.calls == 4
    assert text_of("plain text") == "plain text"


def test_guarded_reward_scores_a_pasted_answer_as_x() -> None:
    """An x' that pastes the preferred answer y+ into the query (real HH-RLHF pairs) is sent to
    the generator as x under the guard, so it earns exactly x's reward; a real rewrite is sent
    as is. Unguarded (the paper), the pasted x' reaches the generator."""
    from recast.refiner.refine import Guard

    queries = [p.prompt for p in PAIRS]
    pasted = [f"{p.prompt} {p.chosen[:150]}" for p in PAIRS]
    rewrite = "Please answer in detail: " + queries[0]

    def call(guard: Guard | None, x_prime: list[str]) -> tuple[list[float], list[str]]:
        generator = ScriptedGenerator()
        fn = GeneratorReward(generator, ScriptedReward(), Sampling(max_new_tokens=8), guard)
        completions = [[{"role": "assistant", "content": x}] for x in x_prime]
        return fn(prompts=[None] * len(x_prime), completions=completions, query=queries), (
            generator.seen
        )

    guard = Guard(enabled=True)
    as_x, _ = call(None, queries)
    guarded, seen = call(guard, pasted)
    assert seen == queries and guarded == as_x  # every pasted answer scored as x
    assert guard.flagged()["check_total"] == 4 and guard.flagged()["check_rewrite"] == 0
    unguarded, seen = call(None, pasted)
    assert seen == pasted and unguarded != as_x
    _, seen = call(Guard(enabled=True), [rewrite, *queries[1:]])
    assert seen[0] == rewrite  # a rewrite goes through


def test_sequence_kl_matches_a_hand_computation() -> None:
    torch.manual_seed(0)
    p, q = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    tokens = torch.tensor([[1, 4, 0], [2, 2, 3]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    lp, lq = p.log_softmax(-1), q.log_softmax(-1)
    expected = torch.tensor(
        [
            sum(float(lp[0, t, tokens[0, t]] - lq[0, t, tokens[0, t]]) for t in range(2)),
            sum(float(lp[1, t, tokens[1, t]] - lq[1, t, tokens[1, t]]) for t in range(3)),
        ]
    )
    assert torch.allclose(sequence_kl(p, q, tokens, mask), expected, atol=1e-5)
    assert torch.allclose(sequence_kl(p, p, tokens, mask), torch.zeros(2))
    # its expectation under p is the exact KL: check on many samples of one position
    probs = p[0, 0].softmax(-1)
    samples = torch.multinomial(probs, 20000, replacement=True)[None]
    estimate = (
        sequence_kl(
            p[0, :1].expand(20000, 5)[None],
            q[0, :1].expand(20000, 5)[None],
            samples,
            torch.ones(1, 20000),
        )
        / 20000
    )
    exact = (probs * (probs.log() - q[0, 0].log_softmax(-1))).sum()
    assert float(estimate) == pytest.approx(float(exact), abs=0.02)


@pytest.fixture
def prompter_params(in_tmp: Path, tiny_lm: str, minilm: str):
    overrides = [
        f"ingest.root={SAMPLES}",
        f"generator.model={tiny_lm}",
        f"refiner.model={tiny_lm}",
        *tiny_eval(tiny_lm, minilm),
        "tracking.enabled=false",
    ]
    params = load_params("params.yaml", overrides)
    stages.build(params)
    reward_stage(params)
    return params


def test_gap_is_paired_over_the_same_queries() -> None:
    """Δ1, Δ2 and the gain are paired differences: a constant offset has no spread at all,
    where an unpaired difference of these means would have a wide interval."""
    a = [0.1, 2.0, -1.5, 0.7, 3.2, -0.4]
    shifted = [v - 0.5 for v in a]
    d = gap(a, shifted, 500, 0)
    assert d["mean"] == pytest.approx(0.5) and d["ci95"] == pytest.approx([0.5, 0.5])
    wide = gap(a, list(reversed(shifted)), 500, 0)
    assert wide["ci95"][1] - wide["ci95"][0] > 1.0


def test_kl_of_the_prompter_to_itself_is_zero(prompter_params, tiny_lm: str) -> None:
    queries = [p.prompt for p in PAIRS[:2]]
    kl = prompter_kl(prompter_params.prompter, tiny_lm, tiny_lm, queries)
    assert kl == pytest.approx(0.0, abs=1e-5)
    # in batches of one query (a dev set larger than a batch): still zero
    kl = prompter_kl(prompter_params.prompter, tiny_lm, tiny_lm, queries, batch_size=1)
    assert kl == pytest.approx(0.0, abs=1e-5)


def test_completion_logits_of_a_left_padded_batch_are_each_rows_own(tiny_lm: str) -> None:
    """prompter_kl scores every query's x' in one left-padded batch: each row's logits must be
    those of the row alone, at the positions that predict each token of x' (a slice one off
    gives other logits, or another shape)."""
    from recast.generator.local import chat_ids
    from recast.models.load import load_causal_lm

    model, tokenizer = load_causal_lm(tiny_lm, "float32", "cpu")
    heads = [chat_ids(tokenizer, p.prompt) for p in PAIRS[:3]]
    assert len({len(h) for h in heads}) > 1  # the rows really are padded
    tails = [tokenizer(p.chosen, add_special_tokens=False)["input_ids"][:5] for p in PAIRS[:3]]
    width = max(len(h) for h in heads)
    pad = tokenizer.pad_token_id
    rows = zip(heads, tails, strict=True)
    seq = torch.tensor([[pad] * (width - len(h)) + h + t for h, t in rows])
    mask = torch.tensor([[0] * (width - len(h)) + [1] * (len(h) + 5) for h in heads])
    with torch.inference_mode():
        batched = completion_logits(model, seq, mask, width)
        for row, (h, t) in enumerate(zip(heads, tails, strict=True)):
            alone = model(torch.tensor([h + t])).logits[:, len(h) - 1 : -1]
            assert torch.allclose(batched[row], alone[0], atol=1e-4)


def test_train_prompter_runs_grpo_and_measures_the_gaps(prompter_params, in_tmp: Path) -> None:
    result = train_prompter(prompter_params)
    # two steps share one generation batch: 2 queries x num_generations x', each answered
    assert result["steps"] == 2 and [r["step"] for r in result["curve"]] == [1]
    assert result["generator_calls"] == 2 * 2
    assert (in_tmp / "runs" / "prompter" / "model" / "config.json").exists()
    assert (in_tmp / "runs" / "prompter" / "oracle" / "model" / "config.json").exists()
    for key in ("delta_1", "delta_2", "gain_over_sft"):
        low, high = result[key]["ci95"]
        assert low <= result[key]["mean"] <= high
    # the KL is ρ's (the trained prompter's) to ρ_sft's: measured again on the same dev queries
    # with the same seed it is the same number (the wrong pair of models would differ)
    pp = prompter_params.prompter
    dev = [p.prompt for p in load_split(prompter_params, "dev")][: pp.dev_size]
    rho = str(in_tmp / "runs" / "prompter" / "model")
    again = prompter_kl(pp, rho, pp.model, dev)
    assert result["kl_to_sft"] == pytest.approx(again, abs=1e-5)
    saved = json.loads((in_tmp / "runs" / "prompter" / "result.json").read_text())
    assert saved["J_prompter"] == result["J_prompter"]


def test_sweep_writes_reward_against_kl_and_the_report(
    prompter_params, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recast.alignpro as alignpro
    from recast.stages.prompter import report, sweep

    main = train_prompter(prompter_params)
    # seconds and the MLflow id are facts of the run: in runs/log/, not in result.json (DVC's)
    saved = json.loads((in_tmp / "runs/prompter/result.json").read_text())
    assert "seconds" not in saved and "mlflow_run_id" not in saved
    assert json.loads((in_tmp / "runs/log/prompter.json").read_text())["seconds"] > 0
    measured = []
    real_returns = alignpro.returns
    monkeypatch.setattr(alignpro, "returns", lambda *a: measured.append(a[3]) or real_returns(*a))
    rows = sweep(prompter_params)["rows"]
    assert [r["lambda"] for r in rows] == [0.0, 0.1]
    # J(π_F) and J(ρ_sft) come from the prompter stage's result.json: only J(ρ) is measured
    assert len(measured) == 1 + 1
    # a sweep that cannot reuse them (another key: here a tampered one) measures them for the
    # first λ (3 measurements, then 1)...
    main_json = in_tmp / "runs/prompter/result.json"
    main_json.write_text(json.dumps({**saved, "returns_key": "another"}))
    shutil.rmtree(in_tmp / "runs/prompter-sweep")
    measured.clear()
    rows = sweep(prompter_params)["rows"]
    assert len(measured) == 3 + 1
    main_json.write_text(json.dumps(saved))
    # ...and they are the numbers the prompter stage measured on its own, in another call
    for lam in ("0", "0.1"):
        swept = json.loads((in_tmp / f"runs/prompter-sweep/lambda-{lam}/result.json").read_text())
        assert swept["returns"]["frozen"] == main["returns"]["frozen"]
        assert swept["returns"]["sft"] == main["returns"]["sft"]
    assert all(
        (in_tmp / "runs/prompter-sweep" / f"lambda-{lam:g}/model").is_dir() for lam in (0, 0.1)
    )
    report(prompter_params)
    text = (in_tmp / "reports/prompter/report.md").read_text()
    assert "Δ1 = J(oracle) − J(π_F)" in text and "| 0.1 |" in text
    assert (in_tmp / "reports/prompter/sweep.png").stat().st_size > 0
    assert (in_tmp / "reports/prompter/curve.png").stat().st_size > 0
    # a second call with the same inputs reuses the trained prompter
    again = train_prompter(prompter_params)
    assert again["key"] == json.loads((in_tmp / "runs/prompter/result.json").read_text())["key"]
