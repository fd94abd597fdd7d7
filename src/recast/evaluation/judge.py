"""The judge: the paper's Appendix C prompt, each pair judged in both orders.

A verdict is read from the judge's text, never guessed: output without exactly one of
[[A]] / [[B]] / [[C]] as its final verdict is counted as unparsed and reported. Over the two
orders, "ours" wins only if both orders prefer it and loses only if both prefer the other; a
verdict that flips with the order counts as a tie (the FastChat convention).

The pointwise mode, for small local judges, asks for each answer alone whether it is good and
reads P(Yes) from the judge's scores instead of its text.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from recast.generator.base import Generator, Sampling

# Appendix C, "Evaluation-Aware Prompt", and its prompt template.
JUDGE_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two "
    "AI assistants to the user question displayed below. You should choose the assistant that "
    "follows the user's instructions and answers the user's question better. Your evaluation "
    "should consider factors such as the helpfulness, relevance, accuracy, depth, creativity, "
    "and level of detail of their responses. Begin your evaluation by comparing the two "
    "responses and provide a short explanation. Avoid any position biases and ensure that the "
    "order in which the responses were presented does not influence your decision. Do not allow "
    "the length of the responses to influence your evaluation. Do not favor certain names of the "
    "assistants. Be as objective as possible. After providing your explanation, output your "
    'final verdict by strictly following this format: "[[A]]" if assistant A is better, '
    '"[[B]]" if assistant B is better, and "[[C]]" for a tie.'
)
TEMPLATE = (
    "[User Question]\n{question}\n\n"
    "[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]\n\n"
    "[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]"
)
POINTWISE = (
    "Here is a user question and an AI assistant's answer.\n\n[User Question]\n{question}\n\n"
    "[The Start of the Answer]\n{answer}\n[The End of the Answer]\n\n"
    "Is this a helpful, relevant, accurate and detailed answer to the question? "
    "Reply with Yes or No."
)

Verdict = Literal["A", "B", "C"]
Outcome = Literal["win", "loss", "tie"]
_VERDICT = re.compile(r"\[\[([ABC])\]\]")


def parse_verdict(text: str) -> Verdict | None:
    """The last [[A]] / [[B]] / [[C]] in the judge's output; None if there is none."""
    found = _VERDICT.findall(text)
    return found[-1] if found else None  # type: ignore[return-value]


def combine(ours_first: Verdict | None, ours_second: Verdict | None) -> Outcome | None:
    """One outcome for "ours" from two orders: ours is A in the first, B in the second.
    None when either order could not be parsed."""
    if ours_first is None or ours_second is None:
        return None
    first = {"A": "win", "B": "loss", "C": "tie"}[ours_first]
    second = {"B": "win", "A": "loss", "C": "tie"}[ours_second]
    return first if first == second else "tie"  # type: ignore[return-value]


@dataclass
class Judged:
    """A judge's outcomes for "ours" against another system, and how much to trust them."""

    outcomes: list[Outcome | None]
    """Per prompt: win / loss / tie for "ours", None where the judge's text had no verdict."""
    raw: list[tuple[str, str]] = field(default_factory=list)
    """Per prompt: the judge's text in both orders (pairwise mode)."""
    consistent: list[bool] = field(default_factory=list)
    """Per prompt: both orders gave the same verdict about the same answer (pairwise mode)."""

    @property
    def unparsed(self) -> int:
        return sum(o is None for o in self.outcomes)

    def counts(self) -> Counter[str]:
        return Counter(o for o in self.outcomes if o is not None)

    def position_consistency(self) -> float | None:
        """Share of parsed prompts whose verdict did not depend on the order."""
        parsed = [c for c, o in zip(self.consistent, self.outcomes, strict=True) if o is not None]
        return sum(parsed) / len(parsed) if parsed else None


class PairwiseJudge:
    """Appendix C's judge on any generator backend (a local model, vLLM, an API)."""

    def __init__(self, generator: Generator, max_new_tokens: int = 512) -> None:
        self.generator = generator
        # greedy: a judge's verdict should not depend on a sampling seed
        self.sampling = Sampling(max_new_tokens=max_new_tokens, temperature=0.0)

    def prompt(self, question: str, answer_a: str, answer_b: str) -> str:
        body = TEMPLATE.format(question=question, answer_a=answer_a, answer_b=answer_b)
        return f"{JUDGE_PROMPT}\n\n{body}"

    def judge(self, questions: list[str], ours: list[str], other: list[str]) -> Judged:
        n = len(questions)
        prompts = [self.prompt(q, a, b) for q, a, b in zip(questions, ours, other, strict=True)]
        prompts += [self.prompt(q, b, a) for q, a, b in zip(questions, ours, other, strict=True)]
        texts = self.generator.generate(prompts, self.sampling)
        first, second = texts[:n], texts[n:]
        outcomes, consistent = [], []
        for t1, t2 in zip(first, second, strict=True):
            v1, v2 = parse_verdict(t1), parse_verdict(t2)
            outcome = combine(v1, v2)
            outcomes.append(outcome)
            # consistent: the same answer preferred in both orders, or a tie in both
            consistent.append(
                outcome is not None and (v1, v2) in {("A", "B"), ("B", "A"), ("C", "C")}
            )
        return Judged(outcomes, list(zip(first, second, strict=True)), consistent)


class PointwiseJudge:
    """P(Yes) that an answer is good, from the judge's scores: p = e^-CE(Yes) / (e^-CE(Yes) +
    e^-CE(No)). "ours" wins when its p exceeds the other's by more than `tie_margin`."""

    def __init__(self, generator: Generator, tie_margin: float = 0.05) -> None:
        self.generator, self.tie_margin = generator, tie_margin
        self.cache: dict[str, float] = {}  # "ours" meets every other system: score it once

    def p_good(self, questions: list[str], answers: list[str]) -> list[float]:
        prompts = [
            POINTWISE.format(question=q, answer=a) for q, a in zip(questions, answers, strict=True)
        ]
        todo = sorted(set(prompts) - set(self.cache))
        if todo:
            ce = self.generator.score(todo * 2, ["Yes"] * len(todo) + ["No"] * len(todo))
            n = len(todo)
            for i, prompt in enumerate(todo):
                self.cache[prompt] = 1.0 / (1.0 + math.exp(ce[i] - ce[n + i]))
        return [self.cache[p] for p in prompts]

    def judge(self, questions: list[str], ours: list[str], other: list[str]) -> Judged:
        p = self.p_good(questions + questions, ours + other)
        n = len(questions)
        outcomes: list[Outcome | None] = []
        for a, b in zip(p[:n], p[n:], strict=True):
            outcomes.append(
                "win" if a - b > self.tie_margin else "loss" if b - a > self.tie_margin else "tie"
            )
        return Judged(outcomes, consistent=[True] * n)  # one answer at a time: no order to flip


@dataclass
class Agreement:
    """How far a judge can be trusted, measured on labelled preference pairs."""

    accuracy: float | None
    """Share of parsed pairs where the judge prefers the human / GPT-4 chosen answer (None:
    no verdict parsed)."""
    ties: float | None
    position_consistency: float | None
    unparsed: int
    n: int


def agreement(
    judge: PairwiseJudge | PointwiseJudge,
    questions: list[str],
    chosen: list[str],
    rejected: list[str],
) -> Agreement:
    """Judge chosen ("ours") against rejected: a win is agreement with the label."""
    judged = judge.judge(questions, chosen, rejected)
    counts = judged.counts()
    parsed = sum(counts.values())
    return Agreement(
        accuracy=counts["win"] / parsed if parsed else None,
        ties=counts["tie"] / parsed if parsed else None,
        position_consistency=judged.position_consistency(),
        unparsed=judged.unparsed,
        n=len(questions),
    )
