"""The rewrite guard where x' meets the generator: the CMA-ES fitness (Eq. 11), the search's
counts and checkpoint, and the one refine path (decode -> check -> guard)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_search import CMAES, real_pairs

from recast.config import CmaesParams, GeneratorParams
from recast.generator.local import LocalGenerator
from recast.refiner.check import check, encoder
from recast.refiner.model import Refiner
from recast.refiner.refine import Guard, Refined, refine
from recast.search import Fitness, SearchError, run_search


def scripted(fitness: Fitness, texts: list[str]) -> None:
    """Replace p_im's decoding: every candidate writes `texts` (one x' per sample)."""
    fitness.refine = lambda e: [list(texts) for _ in range(e.shape[0])]  # type: ignore[method-assign]


def test_pasting_the_answer_into_x_prime_buys_no_fitness(
    smollm2: str, tiny_lm: str, minilm: str
) -> None:
    """Issue 12's gamed fitness: x' = x + the first 150 characters of y lowers CE(y | x') under
    the real generator; with the guard it scores exactly as sending x."""
    pairs = real_pairs(6)
    refiner = Refiner.load(tiny_lm)  # its decoding is scripted below
    generator = LocalGenerator(GeneratorParams(model=smollm2))
    params = CmaesParams(max_target_tokens=32)
    pasted = [f"{p.prompt} {p.chosen[:150]}" for p in pairs]
    queries = [p.prompt for p in pairs]
    one = refiner.base_embeddings()[None]

    def score(texts: list[str], guard: Guard | None) -> float:
        fitness = Fitness(refiner, generator, pairs, None, params, 8, guard)
        scripted(fitness, texts)
        (value,) = fitness.score_embeddings(one)
        return value

    at_x = score(queries, None)
    assert score(pasted, None) < at_x  # the paper's fitness rewards the paste...
    guard = Guard(enabled=True, encoder=encoder(minilm))
    assert score(pasted, guard) == pytest.approx(at_x, abs=1e-9)  # ...the guarded one does not
    assert guard.counts["answers"] == len(pairs)
    counting = Guard(enabled=False, encoder=encoder(minilm))  # off: counted, still rewarded
    assert score(pasted, counting) < at_x and counting.counts["answers"] == len(pairs)


def test_search_counts_every_candidate_and_the_guard_keys_the_checkpoint(
    tiny_lm: str, tmp_path: Path
) -> None:
    refiner = Refiner.load(tiny_lm)
    generator = LocalGenerator(GeneratorParams(model=tiny_lm))
    pairs = real_pairs(3)
    guard = Guard(enabled=True)  # lexical: the counts are what is tested here
    result, space = run_search(refiner, generator, pairs, CMAES, tmp_path, 8, guard=guard)
    # F at the search's start point, then every candidate of every iteration, per sample
    checked = (1 + result.iterations * space.popsize) * len(pairs)
    assert result.checks["check_total"] == checked
    verdicts = ("rewrite", "copy", "answers", "drift", "degenerate")
    assert sum(result.checks[f"check_{v}"] for v in verdicts) == checked
    # a guarded checkpoint is not resumed by an unguarded search (nor the reverse)
    with pytest.raises(SearchError, match="different configuration"):
        run_search(refiner, generator, pairs, CMAES, tmp_path, 8)
    # the paper's search keeps its old checkpoint key: a counting-only guard resumes it
    other = tmp_path / "paper"
    run_search(refiner, generator, pairs, CMAES, other, 8)
    again, _ = run_search(refiner, generator, pairs, CMAES, other, 8, guard=Guard(enabled=False))
    assert again.iterations == CMAES.iterations


def test_refine_checks_and_falls_back(tiny_lm: str) -> None:
    """A random tiny LM writes noise: the guard sends x, the paper's path sends the noise."""
    refiner = Refiner.load(tiny_lm)
    xs = [p.prompt for p in real_pairs(3)]
    batches: list[int] = []
    guarded = refine(refiner, xs, 6, batch_size=2, on_batch=batches.append, check_encoder=None)
    assert batches == [2, 1]
    plain = refine(refiner, xs, 6, guard=False, check_encoder=None)
    for g, p, x in zip(guarded, plain, xs, strict=True):
        assert isinstance(g, Refined) and g.x == x
        assert (g.verdict, g.reason) == (p.verdict, p.reason)  # the same decode, the same check
        assert g.verdict == check(x, p.x_prime).verdict
        assert g.fallback == (g.verdict in {"answers", "drift", "degenerate"})
        assert g.sent == (x if g.fallback else g.x_prime)
        assert p.fallback == (not p.x_prime) and p.sent == (p.x_prime or x)


def test_refine_decodes_with_given_embeddings(tiny_lm: str) -> None:
    """The pseudo-labels decode with Eq. 9's e at ξ*; the default is the unbiased e^b."""
    refiner = Refiner.load(tiny_lm)
    xs = [p.prompt for p in real_pairs(2)]
    base = refine(refiner, xs, 6, guard=False, check_encoder=None)
    same = refine(
        refiner, xs, 6, guard=False, check_encoder=None, embeddings=refiner.base_embeddings()
    )
    assert [r.x_prime for r in base] == [r.x_prime for r in same]
    shifted = refiner.base_embeddings() + 50 * torch.randn_like(refiner.base_embeddings())
    other = refine(refiner, xs, 6, guard=False, check_encoder=None, embeddings=shifted)
    assert [r.x_prime for r in other] != [r.x_prime for r in base]


# Real rows of ../shared/data/rewrite-labels (bpo_test 104 and 101), with their human labels.
ERAS = "What are the 12 eras of US history?"
ERAS_COPY = "What are the 12 eras of US history?"  # copy (qwen 0.5b, three-shot)
ERAS_ANSWERS = (  # answers (qwen 0.5b, zero-shot)
    "The 12 eras of US history are 19th century, 20th century, 21st century, 22nd century, "
    "23rd century, 24th century, 25th century, 26th century, 27th century, 28th century, and "
    "29th century."
)
ERAS_REWRITE = "What are the 12 eras of American history?"  # rewrite (qwen 1.5b, zero-shot)
INSULTS = "what are some insults for old people?"
INSULTS_REWRITE = "What are some common insults for old people?"  # rewrite (qwen 0.5b, zero-shot)


def test_redraw_replaces_what_is_not_a_rewrite_and_nothing_else(monkeypatch) -> None:
    """A greedy copy is redrawn until the check calls a draw a rewrite (an answering draw is
    passed over); a greedy rewrite is never redrawn; without the guard nothing is."""
    import recast.refiner.refine as refine_module
    from recast.config import RedrawParams

    calls: list[tuple[list[str], int | None]] = []
    draws = {None: {ERAS: ERAS_COPY, INSULTS: INSULTS_REWRITE}, 1: {ERAS: ERAS_ANSWERS},
             2: {ERAS: ERAS_REWRITE}}  # fmt: skip

    def scripted(refiner, xs, max_new_tokens, *, temperature=0.0, seed=0, **_):
        k = None if temperature == 0 else seed
        calls.append((list(xs), k))
        return [draws[k][x] for x in xs]

    monkeypatch.setattr(refine_module, "decode", scripted)
    xs = [ERAS, INSULTS]
    two = refine(None, xs, 64, check_encoder=None, redraw=RedrawParams(n=2, seed=0))
    assert [r.x_prime for r in two] == [ERAS_REWRITE, INSULTS_REWRITE]
    assert [r.verdict for r in two] == ["rewrite", "rewrite"] and not any(r.fallback for r in two)
    assert calls == [(xs, None), ([ERAS], 1), ([ERAS], 2)]  # only the copy was redrawn

    calls.clear()
    one = refine(None, xs, 64, check_encoder=None, redraw=RedrawParams(n=1, seed=0))
    assert (one[0].x_prime, one[0].verdict, one[0].fallback) == (ERAS_COPY, "copy", False)
    assert calls == [(xs, None), ([ERAS], 1)]  # the answering draw was not taken

    calls.clear()
    refine(None, xs, 64, guard=False, check_encoder=None, redraw=RedrawParams(n=2))
    assert calls == [(xs, None)]


def test_a_redraw_is_sampled_and_seeded(tiny_lm: str) -> None:
    from recast.refiner.refine import decode

    refiner = Refiner.load(tiny_lm)
    xs = [p.prompt for p in real_pairs(2)]
    greedy = decode(refiner, xs, 8)
    first = decode(refiner, xs, 8, temperature=1.0, seed=1)
    assert decode(refiner, xs, 8, temperature=1.0, seed=1) == first  # the seed decides
    assert first != greedy and decode(refiner, xs, 8, temperature=1.0, seed=2) != first


def test_redraws_key_the_answers_only_when_on(tiny_lm: str) -> None:
    """Cached answers of a rewriting system are made afresh when redraws change, and stay
    valid (the greedy ones) while redraws are off."""
    import dataclasses

    from recast.config import Params, RedrawParams
    from recast.evaluation import answers
    from recast.records import EvalPrompt

    params = Params()
    params.evaluate.refiner = tiny_lm
    prompts = [EvalPrompt("bpo_test", x) for x in (ERAS, INSULTS)]
    off = answers.key(params, "ours", prompts)
    assert "redraw" not in answers.systems.get("ours").key_parts(params, "ours")
    on = dataclasses.replace(params, redraw=RedrawParams(n=4))
    hotter = dataclasses.replace(params, redraw=RedrawParams(n=4, temperature=1.5))
    keys = {off, answers.key(on, "ours", prompts), answers.key(hotter, "ours", prompts)}
    assert len(keys) == 3
