"""Best-of-N (survey 003): N samples from the generator, the one the reward model ranks first."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from recast.evaluation.reward import RewardModel
from recast.generator.base import Generator, Sampling


def select_best(rewards: list[list[float]]) -> list[int]:
    """Per prompt, the index of the highest-reward candidate (the first one on a tie)."""
    return [max(range(len(r)), key=r.__getitem__) for r in rewards]


def best_of_n(
    generator: Generator,
    reward: RewardModel,
    questions: list[str],
    n: int,
    sampling: Sampling,
    count_tokens: Callable[[str], int] = lambda text: 0,
) -> tuple[list[str], list[float], int, int]:
    """(best answer per question, its reward, generator calls: n per question, tokens
    generated over all N samples)."""
    if n < 1:
        raise ValueError(f"Best-of-N needs n >= 1, got {n}")
    if sampling.temperature == 0.0 and n > 1:
        raise ValueError(
            "Best-of-N with greedy decoding gives N identical samples: set a temperature"
        )
    candidates = [
        generator.generate(questions, replace(sampling, seed=(sampling.seed or 0) + k))
        for k in range(n)
    ]  # candidates[k][i]: the k-th sample for question i
    rewards = [reward.score(questions, c) for c in candidates]
    per_question = [[rewards[k][i] for k in range(n)] for i in range(len(questions))]
    best = select_best(per_question)
    answers = [candidates[k][i] for i, k in enumerate(best)]
    tokens = sum(count_tokens(a) for c in candidates for a in c)
    return answers, [per_question[i][k] for i, k in enumerate(best)], n * len(questions), tokens
