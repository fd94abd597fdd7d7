"""Speculative Rejection (Sun et al. 2024): Best-of-N at a fraction of its cost. Start N
generations per prompt; every `chunk` tokens, score the partial answers with the reward model
and drop the lowest fraction α; finish the survivors and keep the best."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

from recast.errors import GeneratorError
from recast.evaluation.reward import RewardModel
from recast.generator.base import Generator, Sampling


def survivors(alive: int, alpha: float) -> int:
    """How many of `alive` generations survive one rejection: the top ⌈(1 - α)·alive⌉, at
    least one."""
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"the rejection fraction α must be in [0, 1), got {alpha}")
    return max(1, math.ceil((1.0 - alpha) * alive))


def schedule(n: int, alpha: float, checkpoints: int) -> list[int]:
    """Generations alive in each chunk: [n, survivors(n), survivors(survivors(n)), …]."""
    alive = [n]
    for _ in range(checkpoints - 1):
        alive.append(survivors(alive[-1], alpha))
    return alive


def speculative_rejection(
    generator: Generator,
    reward: RewardModel,
    questions: list[str],
    n: int,
    alpha: float,
    chunk: int,
    sampling: Sampling,
    count_tokens: Callable[[str], int],
) -> tuple[list[str], list[float], int, int]:
    """(best answer per question, its reward, generator calls, generated tokens)."""
    extend = getattr(generator, "continue_answers", None)
    if extend is None:
        raise GeneratorError(
            f"Speculative Rejection resumes partial answers, which the {type(generator).__name__}"
            " backend cannot do (use generator.backend: local)"
        )
    if sampling.temperature == 0.0:
        raise ValueError("Speculative Rejection needs sampling: set a temperature")
    texts = [[""] * n for _ in questions]
    alive = [list(range(n)) for _ in questions]
    done = [[False] * n for _ in questions]
    checkpoints = math.ceil(sampling.max_new_tokens / chunk)
    calls = tokens = 0
    for step in range(checkpoints):
        rows = [(q, c) for q in range(len(questions)) for c in alive[q] if not done[q][c]]
        if not rows:
            break
        grown = extend(
            [questions[q] for q, _ in rows],
            [texts[q][c] for q, c in rows],
            replace(sampling, max_new_tokens=chunk, seed=(sampling.seed or 0) + step),
        )
        calls += len(rows)
        for (q, c), text in zip(rows, grown, strict=True):
            added = count_tokens(text) - count_tokens(texts[q][c])
            tokens += max(added, 0)
            done[q][c] = added < chunk  # stopped early: the answer is finished
            texts[q][c] = text
        if step == checkpoints - 1:
            break
        for q in range(len(questions)):  # reject the lowest α of the partial answers
            scores = reward.score([questions[q]] * len(alive[q]), [texts[q][c] for c in alive[q]])
            ranked = sorted(zip(scores, alive[q], strict=True), reverse=True)
            alive[q] = sorted(c for _, c in ranked[: survivors(len(alive[q]), alpha)])
    best, best_reward = [], []
    for q in range(len(questions)):
        scores = reward.score([questions[q]] * len(alive[q]), [texts[q][c] for c in alive[q]])
        i = max(range(len(scores)), key=scores.__getitem__)
        best.append(texts[q][alive[q][i]])
        best_reward.append(scores[i])
    return best, best_reward, calls, tokens
