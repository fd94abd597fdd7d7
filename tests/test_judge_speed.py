"""The judge's speed levers change no verdict: the shared question prefix gives the full pass's
log-odds, and the reward model trained on frozen features still beats chance on real pairs."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SAMPLES

from recast.evaluation.agreement import read_labelled_pairs
from recast.evaluation.judge import PointwiseJudge

BPO = SAMPLES / "eval-samples" / "bpo_test.json"


@pytest.mark.slow
def test_shared_prefix_log_odds_equal_the_full_pass(smollm2: str) -> None:
    """Header and question run once (and kept for the next call), each answer's rest on that
    cache: the same log-odds as running every whole prompt, on real BPO-test pairs."""
    from recast.config import GeneratorParams
    from recast.generator.local import LocalGenerator

    generator = LocalGenerator(GeneratorParams(model=smollm2, batch_size=4))
    pairs = read_labelled_pairs(BPO, limit=4)
    questions = [p.prompt for p in pairs] * 2
    answers = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    full = PointwiseJudge(generator, share_prefix=False).log_odds(questions, answers)
    shared = PointwiseJudge(generator).log_odds(questions, answers)
    assert np.allclose(shared, full, atol=1e-4)
    assert len(set(np.round(full, 4))) == len(full)  # the answers are told apart
    # the header once, then one entry per question
    assert len(generator._kv_cache) == 1 + len(pairs)
    header = min(generator._kv_cache, key=len)
    assert all(key[: len(header)] == header for key in generator._kv_cache)

    # a later call (another system's answers to the same questions) reuses the cached prefixes
    later = PointwiseJudge(generator, max_answer_words=30)
    cut = later.log_odds(questions[:4], answers[:4])
    assert len(generator._kv_cache) == 1 + len(pairs)
    reference = PointwiseJudge(generator, max_answer_words=30, share_prefix=False)
    assert np.allclose(cut, reference.log_odds(questions[:4], answers[:4]), atol=1e-4)
