"""The judge: the paper's Appendix C prompt, each pair judged in both orders.

A verdict is read from the judge's text, never guessed: output without exactly one of
[[A]] / [[B]] / [[C]] as its final verdict is counted as unparsed and reported. Over the two
orders, "ours" wins only if both orders prefer it and loses only if both prefer the other; a
verdict that flips with the order counts as a tie (the FastChat convention).

The pointwise mode, for small local judges, asks for each answer alone whether it is good and
reads P(Yes) from the judge's scores instead of its text.
"""

from __future__ import annotations

import inspect
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from recast import io
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
    consistent: list[bool] | None = None
    """Per prompt: both orders gave the same verdict about the same answer (pairwise judges;
    None for judges that see one answer at a time, where no order exists to flip)."""

    @property
    def unparsed(self) -> int:
        return sum(o is None for o in self.outcomes)

    def counts(self) -> Counter[str]:
        return Counter(o for o in self.outcomes if o is not None)

    def position_consistency(self) -> float | None:
        """Share of parsed prompts whose verdict did not depend on the order (None for judges
        that see one answer at a time)."""
        if self.consistent is None:
            return None
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


def cut(answer: str, max_words: int | None) -> str:
    """The answer's first `max_words` words (marked as cut): a judge then reads the same budget
    of every answer, which caps its cost and how much sheer length can sway it."""
    words = answer.split()
    if max_words is None or len(words) <= max_words:
        return answer
    return " ".join(words[:max_words]) + " …"


class PointwiseJudge:
    """P(Yes) that an answer is good, read from the judge's next-token distribution:
    p = p(Yes) / (p(Yes) + p(No)) after the POINTWISE prompt. "ours" wins when its log-odds
    log p(Yes) − log p(No) exceed the other's by more than `tie_margin` (0: any difference
    decides; measured on labels, a margin of 0.05 on p turned half of all pairs into ties).

    Answers are cut to `max_answer_words` first: the judge then reads the same budget of every
    answer, which caps its cost and how much sheer length can sway it.

    With `share_prefix` (and a backend that takes a `prefix`, the local one), the prompt's
    fixed header (chat template and instructions, 40 of a BPO-test prompt's 150 tokens) is run
    once and every prompt's rest on its key/value cache, batched across questions. Sharing each
    question too split the batches by question and measured slower on a CPU (docs/method.md,
    "Speed"). None (the default) shares the header where the backend says it pays
    (`shares_prefixes`: on a CPU, not on a GPU, where batching whole prompts is faster).

    With a `store` (a JSON file) the log-odds also outlive the process: each is kept under the
    digest of its prompt, the file under `store_key` (what names the judge model), and a
    prompt found there is not run again. The evaluation keeps its store beside the answers it
    caches, so a fresh clone whose answers are unchanged reads the judge's scores instead of
    running the 1.5B judge for minutes; a changed answer or another judge is scored afresh.
    Timing a judge (`recast judge measure`) uses no store."""

    def __init__(
        self,
        generator: Generator,
        tie_margin: float = 0.0,
        max_answer_words: int | None = 200,
        share_prefix: bool | None = None,
        store: Path | None = None,
        store_key: str = "",
    ) -> None:
        self.generator, self.tie_margin = generator, tie_margin
        if share_prefix is None:
            share_prefix = bool(getattr(generator, "shares_prefixes", False))
        self.max_answer_words, self.share_prefix = max_answer_words, share_prefix
        self.store, self.store_key = store, store_key
        # by the prompt's digest: "ours" meets every other system, so score it once
        self.cache: dict[str, float] = dict(self._stored())

    def _stored(self) -> dict[str, float]:
        """The store's log-odds when it was written for this judge, else nothing."""
        if self.store is None or not self.store.exists():
            return {}
        saved = io.read_json(self.store)
        return saved["log_odds"] if saved.get("key") == self.store_key else {}

    def _keep(self, new: dict[str, float]) -> None:
        """Merge new log-odds into the store (re-read first: a fan-out worker may have added
        some), written atomically."""
        if self.store is not None and new:
            merged = {**self._stored(), **new}
            io.write_json(self.store, {"key": self.store_key, "log_odds": merged})

    def prompt(self, question: str, answer: str) -> str:
        return POINTWISE.format(question=question, answer=cut(answer, self.max_answer_words))

    header: str = POINTWISE.split("{question}")[0]
    """The text every POINTWISE prompt begins with."""

    def log_odds(self, questions: list[str], answers: list[str]) -> list[float]:
        """log p(Yes) − log p(No) per answer: P(Yes)'s order without its saturation (two
        answers the judge both likes get P(Yes) of 0.99999 and 0.999999, which a margin or a
        z-score can no longer tell apart)."""
        prompts = [self.prompt(q, a) for q, a in zip(questions, answers, strict=True)]
        keys = [io.digest(p) for p in prompts]
        todo = sorted({p for p, k in zip(prompts, keys, strict=True) if k not in self.cache})
        if todo:
            one_pass = getattr(self.generator, "first_token_logprobs", None)
            if one_pass is not None and self.share_prefix and _takes(one_pass, "prefix"):
                yes, no = zip(*one_pass(todo, ["Yes", "No"], prefix=self.header), strict=True)
            elif one_pass is not None:  # both logits from one forward pass
                yes, no = zip(*one_pass(todo, ["Yes", "No"]), strict=True)
            else:  # a backend that only scores targets: one pass each (http, vLLM)
                ce = self.generator.score(todo * 2, ["Yes"] * len(todo) + ["No"] * len(todo))
                yes, no = tuple(-c for c in ce[: len(todo)]), tuple(-c for c in ce[len(todo) :])
            new = {
                io.digest(prompt): lp_yes - lp_no
                for prompt, lp_yes, lp_no in zip(todo, yes, no, strict=True)
            }
            self.cache.update(new)
            self._keep(new)
        return [self.cache[k] for k in keys]

    def p_good(self, questions: list[str], answers: list[str]) -> list[float]:
        """P(Yes) / (P(Yes) + P(No)) per answer."""
        return [1.0 / (1.0 + math.exp(-d)) for d in self.log_odds(questions, answers)]

    def scores(self, questions: list[str], answers: list[str]) -> list[float]:
        return self.log_odds(questions, answers)

    def judge(self, questions: list[str], ours: list[str], other: list[str]) -> Judged:
        return judge_by_scores(self, questions, ours, other, self.tie_margin)


def _takes(function: Any, argument: str) -> bool:
    """Whether `function` accepts the keyword `argument` (backends differ)."""
    return argument in inspect.signature(function).parameters


class Scorer(Protocol):
    """A judge that scores each answer on its own (higher is better)."""

    def scores(self, questions: list[str], answers: list[str]) -> list[float]: ...


def judge_by_scores(
    scorer: Scorer, questions: list[str], ours: list[str], other: list[str], tie_margin: float
) -> Judged:
    """Win / loss / tie for "ours" from per-answer scores; no order is involved, so there is no
    position consistency to report."""
    s = scorer.scores(questions + questions, ours + other)
    n = len(questions)
    return _by_difference([a - b for a, b in zip(s[:n], s[n:], strict=True)], tie_margin)


def _by_difference(differences: list[float], tie_margin: float) -> Judged:
    """ "ours" wins where its score exceeds the other's by more than `tie_margin`."""
    outcomes: list[Outcome | None] = [
        "win" if d > tie_margin else "loss" if -d > tie_margin else "tie" for d in differences
    ]
    return Judged(outcomes, consistent=None)


class RewardJudge:
    """The Bradley-Terry reward model r_ω(y|x) as a judge: the higher reward wins.

    Each distinct (question, answer) is scored once: the reward model pads each of its
    batches to its own longest sequence, so the same answer scored in two batches differs in
    the last bits, and with no tie margin that decided 4 of the 50 pairs where ours and ORG
    gave the identical answer (reports/main, 2026-11-26)."""

    def __init__(self, reward: Any, tie_margin: float = 0.0) -> None:
        self.reward, self.tie_margin = reward, tie_margin

    def scores(self, questions: list[str], answers: list[str]) -> list[float]:
        distinct = list(dict.fromkeys(zip(questions, answers, strict=True)))
        scored = self.reward.score([q for q, _ in distinct], [a for _, a in distinct])
        score = dict(zip(distinct, scored, strict=True))
        return [score[qa] for qa in zip(questions, answers, strict=True)]

    def judge(self, questions: list[str], ours: list[str], other: list[str]) -> Judged:
        return judge_by_scores(self, questions, ours, other, self.tie_margin)


class EnsembleJudge:
    """The mean of several scorers' z-scores (each standardized over the answers judged in the
    same call, so that a reward in nats and a probability weigh alike).

    With `share` < 1 it is a cascade, to spend the expensive scorers where the cheap one is
    unsure: the first scorer (the reward model, some 25 times cheaper a pair than the judge
    LLM) scores every pair, and only the `share` of pairs where its z-score margin
    |z(ours) − z(other)| is smallest are scored by the others too, standardized over those
    pairs' answers and averaged with the first's z-scores as above; every other pair is decided
    by the first scorer alone. The share is of the pairs whose two answers differ: ours and ORG
    often give the same answer (a tie for every scorer, with the smallest margin of all), and
    those would otherwise take the LLM's whole share. `share` = 1 is the plain ensemble. Which
    pairs are routed is fixed by the cheap scorer's margins alone, never by labels
    (docs/method.md has the agreement and speed at each share)."""

    def __init__(self, scorers: list[Scorer], tie_margin: float = 0.0, share: float = 1.0) -> None:
        if not scorers:
            raise ValueError("an ensemble needs at least one scorer")
        if not 0.0 < share <= 1.0:
            raise ValueError(f"the share of pairs all scorers see must be in (0, 1]: {share}")
        self.scorers, self.tie_margin, self.share = scorers, tie_margin, share

    def scores(self, questions: list[str], answers: list[str]) -> list[float]:
        total = [0.0] * len(answers)
        for scorer in self.scorers:
            z = _standardized(scorer.scores(questions, answers))
            total = [t + v / len(self.scorers) for t, v in zip(total, z, strict=True)]
        return total

    def judge(self, questions: list[str], ours: list[str], other: list[str]) -> Judged:
        n = len(questions)
        if self.share >= 1.0 or len(self.scorers) == 1 or n == 0:
            return judge_by_scores(self, questions, ours, other, self.tie_margin)
        first = _standardized(self.scorers[0].scores(questions + questions, ours + other))
        margin = [first[i] - first[n + i] for i in range(n)]
        # the same answer twice is a tie for every scorer: it must not spend the LLM's share
        differ = [i for i in range(n) if ours[i] != other[i]]
        k = math.ceil(self.share * len(differ))
        routed = sorted(differ, key=lambda i: (abs(margin[i]), i))[:k]
        qs = [questions[i] for i in routed]
        answers = [ours[i] for i in routed] + [other[i] for i in routed]
        for scorer in self.scorers[1:] if routed else []:  # every pair a tie: nothing to ask
            z = _standardized(scorer.scores(qs + qs, answers))
            for j, i in enumerate(routed):
                margin[i] += z[j] - z[k + j]
        for i in routed:
            margin[i] /= len(self.scorers)
        return _by_difference(margin, self.tie_margin)


def _standardized(values: list[float]) -> list[float]:
    """z-scores over `values` (a constant list stays at 0)."""
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)) or 1.0
    return [(v - mean) / sd for v in values]
