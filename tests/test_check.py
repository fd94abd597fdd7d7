"""The rewrite check (recast.refiner.check) against the hand-labelled rewrites in
../shared/data/rewrite-labels/: the rates it reaches there, and verdicts on real rows."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest
from conftest import SHARED

from recast.refiner.check import (
    HARMFUL,
    Check,
    Encoder,
    check,
    check_many,
    encoder,
    extract_query,
    normalize,
    rates,
)

LABELS = SHARED / "rewrite-labels" / "labelled_rewrites.jsonl"
needs_labels = pytest.mark.skipif(
    not LABELS.exists(), reason=f"the labelled rewrites are not checked out at {LABELS}"
)


@cache
def labelled() -> list[dict[str, Any]]:
    return [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines()]


def row(set_: str, index: int, refiner: str, prompt: str) -> dict[str, Any]:
    """One labelled row by its coordinates (the file's order is not part of its contract)."""
    (found,) = [
        r
        for r in labelled()
        if (r["set"], r["index"], r["refiner"], r["prompt"]) == (set_, index, refiner, prompt)
    ]
    return found


SMOL, QWEN05, QWEN15 = (
    "smollm2-135m-instruct",
    "qwen2.5-coder-0.5b-instruct",
    "qwen2.5-coder-1.5b-instruct",
)
ZERO, THREE = "table1_zero_shot", "table1_three_shot"


@pytest.fixture(scope="module")
def enc(minilm: str) -> Encoder:
    return encoder(minilm)


def verdicts(part: str | None, enc: Encoder | None) -> list[tuple[str, Check]]:
    rows = [r for r in labelled() if part is None or r["set"] == part]
    checks = check_many([r["x"] for r in rows], [r["x_prime"] for r in rows], encoder=enc)
    return [(r["label"], c) for r, c in zip(rows, checks, strict=True)]


# What the check reached when it was written (scripts/check_rewrites.py prints the matrices);
# the floors sit at or just below it. The thresholds were tuned on the bpo_test rows only.
WITH_ENCODER = {  # part: (harmful recall >=, rewrite rows flagged <=)
    "bpo_test": (0.96, 0.05),
    "vicuna_eval": (0.98, 0.0),
    None: (0.98, 0.05),
}
LEXICAL = {"bpo_test": (0.89, 0.10), "vicuna_eval": (0.98, 0.0), None: (0.94, 0.10)}


@needs_labels
@pytest.mark.parametrize("part", ["bpo_test", "vicuna_eval", None])
def test_rates_with_the_encoder(part: str | None, enc: Encoder) -> None:
    r = rates([(label, c.verdict) for label, c in verdicts(part, enc)])
    recall, flagged = WITH_ENCODER[part]
    assert r.harmful_recall >= recall, r.matrix
    assert r.rewrite_flagged <= flagged, r.matrix
    assert r.copy_recall == 1.0, r.matrix


@needs_labels
@pytest.mark.parametrize("part", ["bpo_test", "vicuna_eval", None])
def test_rates_lexical_only(part: str | None) -> None:
    r = rates([(label, c.verdict) for label, c in verdicts(part, None)])
    recall, flagged = LEXICAL[part]
    assert r.harmful_recall >= recall, r.matrix
    assert r.rewrite_flagged <= flagged, r.matrix


@needs_labels
def test_copy_is_exactly_the_labels_definition(enc: Encoder) -> None:
    """Every row labelled copy is a copy, and a copy verdict is given exactly when x and x' are
    equal after lower-casing and removing punctuation and whitespace (the two rows the reader
    labelled rewrite, tailwindcss -> Tailwind CSS, meet that definition too)."""
    for r, (label, c) in zip(labelled(), verdicts(None, enc), strict=True):
        same = normalize(r["x"]) == normalize(r["x_prime"])
        assert (c.verdict == "copy") == same, (r, c)
        if label == "copy":
            assert c.verdict == "copy", (r, c)


@needs_labels
@pytest.mark.parametrize(
    ("coords", "verdict", "reason"),
    [
        # a hyphen is punctuation: comma separated == comma-separated
        (("bpo_test", 106, SMOL, THREE), "copy", "equals x"),
        # code instead of the request
        (("bpo_test", 117, QWEN05, ZERO), "answers", "opens like an answer"),
        # the question restated, then the reasoning
        (("vicuna_eval", 42, QWEN15, THREE), "answers", "starts answering"),
        (("bpo_test", 111, SMOL, THREE), "answers", "states new material"),
        # the model talks about its task
        (("bpo_test", 102, SMOL, ZERO), "degenerate", "meta-chatter"),
        (("bpo_test", 108, SMOL, ZERO), "degenerate", "loops"),
        # the step-by-step instruction of x is dropped
        (("vicuna_eval", 40, QWEN15, THREE), "drift", "dropped"),
        # the quoted Korean word is dropped
        (("bpo_test", 105, QWEN15, ZERO), "drift", "quoted"),
        # "What if ...?" turned into a statement
        (("vicuna_eval", 54, SMOL, ZERO), "drift", "neither asks nor requests"),
        (("bpo_test", 109, QWEN15, ZERO), "rewrite", "same request"),
        # wrapped in a preamble: the quoted query inside is judged
        (("bpo_test", 117, QWEN15, ZERO), "rewrite", "same request"),
    ],
)
def test_verdicts_on_real_rows(
    coords: tuple[str, int, str, str], verdict: str, reason: str, enc: Encoder
) -> None:
    r = row(*coords)
    c = check(r["x"], r["x_prime"], encoder=enc)
    assert c.verdict == verdict == r["label"], c
    assert reason in c.reason
    assert c.harmful == (verdict in HARMFUL)


@needs_labels
def test_the_encoder_catches_a_changed_meaning(enc: Encoder) -> None:
    """ "what is the Adam" -> "What is the Adam optimizer?" keeps every word: only the cosine
    tells that the question now asks about something else."""
    r = row("bpo_test", 118, QWEN15, ZERO)
    assert check(r["x"], r["x_prime"]).verdict == "rewrite"
    c = check(r["x"], r["x_prime"], encoder=enc)
    assert c.verdict == "drift" and "cosine" in c.reason


@needs_labels
def test_extract_query_takes_the_quoted_query_from_a_preamble() -> None:
    r = row("bpo_test", 117, QWEN15, ZERO)
    assert r["wrapped_in_chatter"]
    assert extract_query(r["x_prime"]) == (
        "Can you provide a simple particle system in Python using the dataclasses module?"
    )
    plain = row("bpo_test", 109, QWEN15, ZERO)["x_prime"]
    assert extract_query(plain) == plain.strip()


def test_empty_and_blank_are_degenerate() -> None:
    for blank in ("", "  \n"):
        c = check("What is quantitative easing?", blank)
        assert c.verdict == "degenerate" and c.harmful


def test_pasting_the_answer_into_the_query_is_flagged() -> None:
    """The gamed fitness of issue 12: x followed by the start of the preferred answer."""
    x = "What is quantitative easing?"
    y = (
        "Quantitative easing is a monetary policy in which a central bank buys government bonds "
        "and other financial assets to inject money into the economy and lower interest rates."
    )
    assert check(x, f"{x} {y}").harmful


def test_answers_pasted_after_real_queries_are_flagged(enc: Encoder) -> None:
    """x followed by the start of the preferred answer y (or y alone), on bundled HH-RLHF pairs
    the check was not tuned on (it was looked at on the first 64): at least 95 % flagged."""
    from test_search import real_pairs

    pairs = real_pairs(200)[64:]
    variants = [
        (p.prompt, xp)
        for p in pairs
        for xp in (f"{p.prompt} {p.chosen[:150]}", f"{p.prompt}\n\n{p.chosen[:60]}", p.chosen[:150])
    ]
    checks = check_many([x for x, _ in variants], [xp for _, xp in variants], encoder=enc)
    assert len(variants) > 200
    assert sum(c.harmful for c in checks) / len(checks) >= 0.95
