"""The judge's parsing and order-swapping (against scripted judges), the Bradley-Terry loss and
its gradient, Best-of-N's selection, and bootstrap intervals on a known case."""

from __future__ import annotations

import math

import pytest
import torch
from test_search import real_pairs

from recast.evaluation.agreement import measure
from recast.evaluation.bon import best_of_n, select_best
from recast.evaluation.bootstrap import bootstrap_ci, rates
from recast.evaluation.judge import (
    PairwiseJudge,
    PointwiseJudge,
    combine,
    parse_verdict,
)
from recast.evaluation.reward import RewardModel, bt_loss, pairwise_accuracy, train_reward
from recast.generator.base import Sampling
from recast.records import PreferencePair

PAIRS = real_pairs(12)


def agreement(judge, questions, chosen, rejected):
    """The judge measured on these pairs (chosen is the labelled better answer)."""
    return measure(
        judge,
        [
            PreferencePair("test", q, c, r)
            for q, c, r in zip(questions, chosen, rejected, strict=True)
        ],
    )


QUESTIONS = [p.prompt for p in PAIRS]
CHOSEN = [p.chosen for p in PAIRS]
REJECTED = [p.rejected for p in PAIRS]


def test_parse_verdict_reads_the_last_bracketed_verdict_only() -> None:
    assert parse_verdict("Assistant A is more detailed. [[A]]") == "A"
    assert parse_verdict("I first thought [[A]], but on reflection [[B]]") == "B"
    assert parse_verdict("Both are equally good.\n\n[[C]]") == "C"
    assert parse_verdict("Assistant A is better. [A]") is None  # not the format asked for
    assert parse_verdict("[[D]]") is None
    assert parse_verdict("") is None


@pytest.mark.parametrize(
    ("first", "second", "outcome"),
    [
        ("A", "B", "win"),  # ours preferred in both orders
        ("B", "A", "loss"),
        ("C", "C", "tie"),
        ("A", "A", "tie"),  # always the first position: the verdict flips with the order
        ("B", "B", "tie"),
        ("A", "C", "tie"),
        ("A", None, None),  # unparsed in one order: counted apart, never guessed
    ],
)
def test_combine_follows_the_fastchat_convention(first, second, outcome) -> None:
    assert combine(first, second) == outcome


class ScriptedJudge:
    """A judge backend whose verdict is a fixed rule of the prompt it is shown."""

    def __init__(self, rule) -> None:
        self.rule, self.prompts = rule, []

    def generate(self, prompts: list[str], sampling: Sampling) -> list[str]:
        self.prompts += prompts
        return [self.rule(p) for p in prompts]

    def score(self, prompts: list[str], targets: list[str]) -> list[float]:
        return [self.rule(p, t) for p, t in zip(prompts, targets, strict=True)]

    def close(self) -> None:
        pass


def answer_in(prompt: str, slot: str) -> str:
    start = prompt.index(f"[The Start of Assistant {slot}'s Answer]\n")
    end = prompt.index(f"\n[The End of Assistant {slot}'s Answer]")
    return prompt[start:end].split("\n", 1)[1]


def test_pairwise_judge_swaps_the_order_and_knows_the_chosen_answer() -> None:
    chosen = set(CHOSEN)
    oracle = ScriptedJudge(
        lambda p: "A is the chosen one. [[A]]" if answer_in(p, "A") in chosen else "[[B]]"
    )
    result = agreement(PairwiseJudge(oracle), QUESTIONS, CHOSEN, REJECTED)
    assert result.agreement == 1.0 and result.position_consistency == 1.0
    assert result.unparsed == 0 and result.n == 12
    assert len(oracle.prompts) == 24  # each pair in both orders
    first, swapped = oracle.prompts[0], oracle.prompts[12]
    assert answer_in(first, "A") == answer_in(swapped, "B") == CHOSEN[0]
    assert first.startswith("Please act as an impartial judge")


def test_a_position_biased_judge_only_produces_ties() -> None:
    biased = ScriptedJudge(lambda p: "[[A]]")
    result = agreement(PairwiseJudge(biased), QUESTIONS, CHOSEN, REJECTED)
    assert result.agreement == 0.0 and result.ties == 1.0
    assert result.position_consistency == 0.0


def test_unparsable_judge_output_is_counted_not_guessed() -> None:
    rambling = iter(["[[A]]", "I cannot decide."] * 12)
    judged = PairwiseJudge(ScriptedJudge(lambda p: next(rambling))).judge(
        QUESTIONS[:6], CHOSEN[:6], REJECTED[:6]
    )
    assert judged.unparsed == 3  # prompts 1, 3, 5 lost their verdict in the first order
    assert judged.counts().total() == 3


def test_pointwise_judge_compares_p_yes() -> None:
    chosen = set(CHOSEN)

    def ce(prompt: str, target: str) -> float:  # Yes is likely for chosen answers
        good = any(c in prompt for c in chosen)
        return -math.log(0.9 if (target == "Yes") == good else 0.1)

    judge = PointwiseJudge(ScriptedJudge(ce))  # a scoring-only backend: Yes and No scored apart
    assert judge.p_good(QUESTIONS[:1], CHOSEN[:1])[0] == pytest.approx(0.9)
    result = agreement(judge, QUESTIONS, CHOSEN, REJECTED)
    assert result.agreement == 1.0


def test_bootstrap_interval_on_a_known_case() -> None:
    outcomes = ["win"] * 50 + ["loss"] * 50 + [None] * 7
    assert rates(outcomes) == {"win": 50.0, "loss": 50.0, "tie": 0.0}
    ci = bootstrap_ci(outcomes, n_boot=4000, seed=1)
    half = 1.96 * math.sqrt(0.25 / 100) * 100  # the normal approximation: ±9.8 points
    assert ci["win"][0] == pytest.approx(50 - half, abs=1.5)
    assert ci["win"][1] == pytest.approx(50 + half, abs=1.5)
    assert ci["tie"] == (0.0, 0.0)
    assert bootstrap_ci(["win"] * 20)["win"] == (100.0, 100.0)


def test_bradley_terry_loss_and_gradient() -> None:
    r_w = torch.tensor([2.0, 0.0, -1.0], requires_grad=True)
    r_l = torch.tensor([0.0, 0.0, 1.0], requires_grad=True)
    loss = bt_loss(r_w, r_l)
    delta = torch.tensor([2.0, 0.0, -2.0])
    assert loss.item() == pytest.approx(float(torch.log1p(torch.exp(-delta)).mean()))
    loss.backward()
    expected = -(1 - torch.sigmoid(delta)) / 3  # d/dr_w of -log σ(r_w - r_l), averaged
    assert torch.allclose(r_w.grad, expected) and torch.allclose(r_l.grad, -expected)


def test_select_best_and_best_of_n() -> None:
    assert select_best([[0.1, 0.7, 0.3], [2.0, 2.0, 1.0]]) == [1, 0]

    class LengthReward:
        def score(self, questions: list[str], answers: list[str]) -> list[float]:
            return [float(len(a)) for a in answers]

    samples = {0: CHOSEN[:3], 1: REJECTED[:3], 2: [CHOSEN[3]] * 3}
    generator = ScriptedJudge(None)
    generator.generate = lambda prompts, sampling: samples[sampling.seed]  # type: ignore[method-assign]
    answers, rewards, calls, tokens = best_of_n(
        generator, LengthReward(), QUESTIONS[:3], 3, Sampling(temperature=0.7, seed=0), len
    )
    for i, answer in enumerate(answers):
        assert len(answer) == max(len(samples[k][i]) for k in range(3)) == rewards[i]
    assert calls == 9 and tokens == sum(len(a) for k in range(3) for a in samples[k])
    with pytest.raises(ValueError, match="identical samples"):
        best_of_n(generator, LengthReward(), QUESTIONS[:3], 3, Sampling(temperature=0.0))


def test_reward_model_learns_real_preferences(minilm: str, tmp_path) -> None:
    pairs = real_pairs(32)
    model = RewardModel.from_encoder(minilm, max_length=64)
    losses = train_reward(model, pairs, epochs=3, lr=1e-4, batch_size=8)
    assert sum(losses[-6:]) / 6 < sum(losses[:6]) / 6  # Eq. 4 goes down
    assert pairwise_accuracy(model, pairs) >= 0.8  # it fits the pairs it saw
    model.save(tmp_path / "rm")
    again = RewardModel.load(tmp_path / "rm")
    assert again.score(QUESTIONS[:2], CHOSEN[:2]) == pytest.approx(
        model.score(QUESTIONS[:2], CHOSEN[:2]), abs=1e-5
    )


def test_reward_model_head_starts_from_its_seed(minilm: str) -> None:
    # Two runs of the reward stage on the same inputs must train the same r_ω: the head's
    # start may not depend on how far the global RNG has moved.
    first = RewardModel.from_encoder(minilm, max_length=32, seed=0)
    torch.rand(1000)
    again = RewardModel.from_encoder(minilm, max_length=32, seed=0)
    other = RewardModel.from_encoder(minilm, max_length=32, seed=1)
    assert torch.equal(first.head.weight, again.head.weight)
    assert not torch.equal(first.head.weight, other.head.weight)


def test_speculative_rejection_schedule_and_run() -> None:
    from recast.errors import GeneratorError
    from recast.evaluation.sr import schedule, speculative_rejection, survivors

    assert survivors(8, 0.5) == 4 and survivors(3, 0.5) == 2 and survivors(1, 0.9) == 1
    assert schedule(16, 0.5, 5) == [16, 8, 4, 2, 1]
    assert schedule(10, 0.0, 3) == [10, 10, 10]  # α = 0 is Best-of-N
    with pytest.raises(ValueError, match="α"):
        survivors(4, 1.0)

    class Growing(ScriptedJudge):
        """Each resume appends one word per token of the chunk; sample k writes 'k' words, so
        the reward (length) ranks the samples the same at every checkpoint."""

        def __init__(self) -> None:
            super().__init__(None)
            self.rows: list[int] = []

        def continue_answers(self, prompts, partials, sampling):
            self.rows.append(len(prompts))
            return [p + f" w{len(p)}" * sampling.max_new_tokens for p in partials]

    class LengthReward:
        def score(self, questions: list[str], answers: list[str]) -> list[float]:
            return [float(len(a)) for a in answers]

    generator = Growing()
    answers, rewards, calls, _ = speculative_rejection(
        generator, LengthReward(), QUESTIONS[:2], 8, 0.5, 4,
        Sampling(max_new_tokens=16, temperature=0.7, seed=0), lambda t: len(t.split()),
    )  # fmt: skip
    assert generator.rows == [16, 8, 4, 2]  # 2 prompts x the schedule [8, 4, 2, 1]
    assert calls == sum(generator.rows) and len(answers) == 2 and rewards[0] == len(answers[0])
    with pytest.raises(GeneratorError, match="cannot do"):
        speculative_rejection(
            ScriptedJudge(None), LengthReward(), QUESTIONS[:1], 2, 0.5, 4,
            Sampling(temperature=0.7), len,
        )  # fmt: skip


# Replies Qwen2.5-Coder-1.5B (the default BPO teacher) wrote for HH-RLHF / Alpaca-GPT4 training
# pairs in `dvc repro bpo`, cut short here.
TEACHER_REPLIES = [
    (
        "Here is the rewritten instruction:\n\n[Instruction]\nSupply a phrase to complete this "
        "proverb: \"It's better to be safe than ____.\"\n\n[Good response]\nIt's better to be "
        "safe than sorry.",
        'Supply a phrase to complete this proverb: "It\'s better to be safe than ____."',
    ),
    (
        "Certainly! Here is the rewritten instruction that would satisfy the user's needs while "
        "providing the good response:\n\n[Instruction]\nWhich countries were involved in the "
        "first World War? Please list all the countries that were involved.",
        "Which countries were involved in the first World War? Please list all the countries "
        "that were involved.",
    ),
    (
        "[Instruction]\nDesign a post for a social media account to promote the following "
        "product: Fresh fruit smoothie\n\n[Good response]\nSay hello to our freshly blended "
        "Fruit Smoothie!",
        "Design a post for a social media account to promote the following product: Fresh fruit "
        "smoothie",
    ),
    (  # no headers at all: the reply is the rewrite
        "Create a detailed timeline of the history of the internet, including the key "
        "milestones and events that shaped the internet as we know it today.",
        "Create a detailed timeline of the history of the internet, including the key "
        "milestones and events that shaped the internet as we know it today.",
    ),
    ("[Instruction]\n\n[Good response]\nIt's better to be safe than sorry.", ""),  # nothing kept
]


@pytest.mark.parametrize("reply,rewrite", TEACHER_REPLIES)
def test_extract_rewrite_keeps_the_instruction_alone(reply: str, rewrite: str) -> None:
    from recast.evaluation.bpo import extract_rewrite

    assert extract_rewrite(reply) == rewrite


def test_a_query_answered_in_the_set_is_not_generated_again() -> None:
    """ "ours" sends x itself where the guard rejected x': the generator answers each distinct
    query once per set, and each system gets the answer to what it sent."""
    from recast.config import load_params
    from recast.evaluation.systems import Context

    generator = ScriptedJudge(lambda p: f"answer to {p[:20]}")
    ctx = Context(load_params(None, []), generator, None, len)  # type: ignore[arg-type]
    org, _ = ctx.greedy_answers(QUESTIONS[:3])
    sent = [QUESTIONS[0], "Please explain: " + QUESTIONS[1], QUESTIONS[2]]  # one x' kept
    ours, tokens = ctx.greedy_answers(sent)
    assert generator.prompts == [*sorted(QUESTIONS[:3]), sent[1]]
    assert ours == [org[0], f"answer to {sent[1][:20]}", org[2]]
    assert tokens == sum(map(len, ours))
