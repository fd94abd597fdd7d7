"""Decoding x' to the end of the query (refiner.decoding = query): the stop at the end of the
turn or at a blank line, the length cap relative to x, and the no-repeat n-gram ban; the
mechanics on a tiny random LM (its own loops and run-ons are what the rule must stop) and a
scripted next token, and the effect on real queries with SmolLM2 (slow)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import torch
from test_search import real_pairs

from recast.config import load_params
from recast.errors import ConfigError
from recast.refiner.model import PAPER, QUERY, Decoding, Refiner, _repeats
from recast.refiner.prompts import p_x
from recast.refiner.refine import decode

QUERIES = [p.prompt for p in real_pairs(6)]


def grams(ids: list[int], n: int) -> int:
    """How many token n-grams of `ids` repeat an earlier one."""
    seen = Counter(tuple(ids[i : i + n]) for i in range(len(ids) - n + 1))
    return sum(c - 1 for c in seen.values())


def test_params_switch_between_the_paper_and_the_query_rule() -> None:
    paper = load_params(None, ["refiner.decoding=paper"]).refiner
    assert Decoding.from_params(paper) == PAPER
    query = load_params(None, []).refiner
    assert Decoding.from_params(query) == QUERY  # the defaults are the documented rule
    custom = load_params(None, ["refiner.decode_no_repeat_ngram=0"]).refiner
    assert Decoding.from_params(custom).no_repeat_ngram == 0
    with pytest.raises(ConfigError, match="refiner.decoding='greedy' is not allowed"):
        load_params(None, ["refiner.decoding=greedy"])


def test_repeats_names_the_tokens_that_would_close_a_seen_ngram() -> None:
    assert _repeats([1, 2, 3, 1, 2], 3) == [3]  # (1, 2) was followed by 3
    assert _repeats([1, 2, 3, 1, 2, 4, 1, 2], 3) == [3, 4]
    assert _repeats([1, 2, 3], 3) == []  # (2, 3) never seen before
    assert _repeats([5, 5], 3) == []  # shorter than n


def test_budget_is_a_multiple_of_x_with_a_floor_and_never_above_n_g(tiny_lm: str) -> None:
    refiner = Refiner.load(tiny_lm, decoding=QUERY)
    sizes = [len(refiner.tokenizer(q, add_special_tokens=False)["input_ids"]) for q in QUERIES]
    budgets = refiner.budget(QUERIES, 64)
    for n, b in zip(sizes, budgets, strict=True):
        assert b == min(64, max(16, 3 * n))
    assert refiner.budget(["Hi"], 64) == [16]
    assert Refiner.load(tiny_lm).budget(QUERIES, 64) == [64] * len(QUERIES)  # paper: n_g


def test_query_rule_cuts_the_tiny_lms_run_on(tiny_lm: str) -> None:
    """The random tiny LM rarely emits EOS: the paper's rule decodes up to n_g tokens; the query
    rule stays under each x's cap, with no token 4-gram twice."""
    xs = ["Name three fruits.", "Why is the sky blue?", QUERIES[0]]
    paper = Refiner.load(tiny_lm)
    query = Refiner.load(tiny_lm, decoding=QUERY)

    def ids(refiner: Refiner) -> list[list[int]]:
        texts = decode(refiner, xs, 48, batch_size=2)  # the batched path of `refine`
        return [refiner.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]

    loose, tight = ids(paper), ids(query)
    caps = query.budget(xs, 48)
    assert any(len(t) > c for t, c in zip(loose, caps, strict=True))
    for t, c in zip(tight, caps, strict=True):
        # re-tokenizing decoded text may merge or split a token at the edges
        assert len(t) <= c + 2 and grams(t, 4) <= 1


class Scripted(Refiner):
    """The tiny LM's latent step and cache, with the next token taken from a script (one row):
    the stop rules on text a real refiner writes."""

    def __init__(self, model: Any, tokenizer: Any, script: list[int], decoding: Decoding) -> None:
        super().__init__(model, tokenizer, decoding=decoding)
        self.script, self.t = script, 0

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = torch.full((hidden.shape[0], len(self.tokenizer)), -1e30)
        logits[:, self.fallback] = -1.0  # the next best token, where the script's is banned
        logits[:, self.script[min(self.t, len(self.script) - 1)]] = 0.0
        self.t += 1
        return logits

    @property
    def fallback(self) -> int:
        return self.tokenizer(" again", add_special_tokens=False)["input_ids"][0]


def scripted(tiny_lm: str, text: str, decoding: Decoding) -> Scripted:
    base = Refiner.load(tiny_lm)
    ids = base.tokenizer(text, add_special_tokens=False)["input_ids"]
    return Scripted(base.model, base.tokenizer, ids, decoding)


def run(refiner: Refiner, x: str, max_new_tokens: int = 40) -> str:
    with torch.inference_mode():
        prefix = refiner.encode_prefix([p_x(x)], queries=[x])
        return refiner.decode(prefix, refiner.base_embeddings(), max_new_tokens)[0]


def test_query_rule_stops_at_a_blank_line_after_the_query(tiny_lm: str) -> None:
    x = "Explain photosynthesis."
    text = "Explain how photosynthesis works in plants.\n\nPhotosynthesis is the process by which"
    stop = Decoding(stop=True)
    assert run(scripted(tiny_lm, text, stop), x) == "Explain how photosynthesis works in plants."
    assert run(scripted(tiny_lm, text, PAPER), x).startswith(text[:60])  # the paper runs on
    # a blank line before any text is not the end of the query
    lead = "\n\nList three uses of copper.\n\nCopper is"
    assert run(scripted(tiny_lm, lead, stop), x) == "List three uses of copper."


def test_no_repeat_ngram_breaks_a_loop(tiny_lm: str) -> None:
    loop = "Tell me more about it. " * 4
    x = "Tell me about it."
    looping = run(scripted(tiny_lm, loop, PAPER), x, 24)
    assert looping.count("Tell me more about it.") >= 3
    broken = run(scripted(tiny_lm, loop, Decoding(no_repeat_ngram=4)), x, 24)
    assert broken.startswith("Tell me more about") and "again" in broken
    assert broken.count("Tell me more about it.") < looping.count("Tell me more about it.")


def test_query_rule_stops_at_the_end_of_turn_marker(tiny_lm: str) -> None:
    """Where EOS is not the chat template's end of turn, the paper's rule decodes past it."""
    text = "Explain how photosynthesis works.<|im_end|>Photosynthesis is how plants"
    stop, paper = scripted(tiny_lm, text, Decoding(stop=True)), scripted(tiny_lm, text, PAPER)
    other = stop.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    for r in (stop, paper):  # an EOS other than <|im_end|>, as in base (non-chat) models
        r.stop_ids = [other]
        r.turn_ids = sorted({other, r.tokenizer.convert_tokens_to_ids("<|im_end|>")})
    assert run(stop, "Explain photosynthesis.") == "Explain how photosynthesis works."
    assert "Photosynthesis is how" in run(paper, "Explain photosynthesis.")


def test_the_fitness_decodes_with_the_refiners_rule(tiny_lm: str) -> None:
    """Fitness (CMA-ES, dev fitness, promotion gate) builds its prefixes with the queries, so
    the length cap holds there too, for every candidate row."""
    from recast.config import CmaesParams
    from recast.search import Fitness

    pairs = real_pairs(3)
    refiner = Refiner.load(tiny_lm, decoding=QUERY)
    fit = Fitness(refiner, None, pairs, None, CmaesParams(batch_rows=4), 48)  # type: ignore[arg-type]
    e = refiner.base_embeddings()[None].repeat(2, 1, 1)
    caps = refiner.budget([p.prompt for p in pairs], 48)
    for cand in fit.refine(e):
        for text, cap in zip(cand, caps, strict=True):
            assert len(refiner.tokenizer(text, add_special_tokens=False)["input_ids"]) <= cap + 2


def test_smollm2_x_prime_ends_with_the_query(smollm2: str) -> None:
    """SmolLM2 on real training queries at n_g = 64: the paper's rule runs past the query
    (blank lines, n_g tokens, loops) on some; the query rule never does."""
    from recast.refiner.refine import refine

    xs = [p.prompt for p in real_pairs(8)]
    paper = Refiner.load(smollm2)
    query = Refiner.load(smollm2, decoding=QUERY)
    loose = [r.x_prime for r in refine(paper, xs, 64, guard=False, check_encoder=None)]
    tight = [r.x_prime for r in refine(query, xs, 64, guard=False, check_encoder=None)]
    caps = query.budget(xs, 64)

    def tokens(t: str) -> list[int]:
        return query.tokenizer(t, add_special_tokens=False)["input_ids"]

    def runs_on(t: str, cap: int) -> bool:
        return "\n\n" in t or len(tokens(t)) > cap + 2 or grams(tokens(t), 4) > 1

    assert any(runs_on(t, c) for t, c in zip(loose, caps, strict=True))
    assert not any(runs_on(t, c) for t, c in zip(tight, caps, strict=True))
