"""A query as instruction + input (recast.refiner.query, refiner.keep_input): the split on real
Alpaca-GPT4 records, p_im reading the instruction alone in every place it decodes or is trained,
x' carrying the input verbatim, and the check judging the instruction and its rewrite."""

from __future__ import annotations

import json

from conftest import SAMPLES
from test_search import real_pairs

from recast.config import CmaesParams
from recast.data import alpaca_gpt4
from recast.data.raw import read_records
from recast.records import PreferencePair
from recast.refiner import query
from recast.refiner.check import check, compared
from recast.refiner.model import QUERY, Refiner
from recast.refiner.prompts import p_x
from recast.refiner.refine import decode
from recast.search import Fitness

ALPACA = [
    p
    for p in alpaca_gpt4.to_pairs(
        read_records(SAMPLES / "alpaca-gpt4/comparison_gpt4_data_en.json")
    )
    if isinstance(p, PreferencePair)
]
WITH_INPUT = [p.prompt for p in ALPACA if "\n\n" in p.prompt][:4]
"""Alpaca's "instruction\\n\\ninput" queries, e.g. "Explain why the following fraction is
equivalent to 1/4\\n\\n4/16"."""
BPO_TEST = json.loads((SAMPLES / "eval-samples/bpo_test.json").read_text(encoding="utf-8"))


def test_split_parts_rebuild_x_and_a_single_paragraph_has_no_input() -> None:
    assert len(WITH_INPUT) == 4
    for x in WITH_INPUT:
        instruction, tail = query.split(x)
        assert instruction + tail == x and tail.startswith("\n\n") and "\n" not in instruction
        assert query.join(x, "Rewritten.") == "Rewritten." + tail
        assert query.rewritten_part(x, query.join(x, "Rewritten.")) == "Rewritten."
        assert query.rewritten_part(x, "No input here.") == "No input here."
    plain = real_pairs(1)[0].prompt
    assert query.split(plain) == (plain, "") and query.join(plain, "Other.") == "Other."
    classify = BPO_TEST[1]["prompt"]  # the input on the next line, no blank line
    assert query.split(classify) == (
        "Classify the following words related to fruits.",
        "\nTomato, pineapple, mango",
    )
    assert query.split("\n\nonly text after a blank line") == (
        "\n\nonly text after a blank line",
        "",
    )
    assert query.join(WITH_INPUT[0], "  ") == "  "  # nothing to append to an empty rewrite


def test_refine_path_reads_the_instruction_and_appends_the_input(tiny_lm: str) -> None:
    """With keep_input, x' = p_im(instruction) + input: the decoded part is exactly what the
    same refiner decodes for the instruction alone; without it, p_im reads all of x."""
    kept = Refiner.load(tiny_lm, decoding=QUERY, keep_input=True)
    paper = Refiner.load(tiny_lm, decoding=QUERY)
    instructions = [query.instruction(x) for x in WITH_INPUT]
    x_primes = decode(kept, WITH_INPUT, 12)
    alone = decode(paper, instructions, 12)
    for x, x_prime, own in zip(WITH_INPUT, x_primes, alone, strict=True):
        if own.strip():
            assert x_prime == own.rstrip() + query.split(x)[1]
        assert kept.writes(x, x_prime) == own
    assert decode(paper, WITH_INPUT, 12) != x_primes


def test_fitness_and_training_targets_use_the_same_parts(tiny_lm: str) -> None:
    """The CMA-ES fitness scores x' with the input appended (what the generator is sent), and
    Eq. 12 trains p_im on the part of x* it decodes: x*'s input is not a target."""
    refiner = Refiner.load(tiny_lm, decoding=QUERY, keep_input=True)
    pairs = [PreferencePair("t", x, "chosen", "rejected") for x in WITH_INPUT[:2]]
    fit = Fitness(refiner, None, pairs, None, CmaesParams(batch_rows=4), 12)  # type: ignore[arg-type]
    e = refiner.base_embeddings()[None].repeat(2, 1, 1)
    for cand in fit.refine(e):
        for x, x_prime in zip(WITH_INPUT[:2], cand, strict=True):
            assert not x_prime.strip() or x_prime.endswith(query.split(x)[1])
    x_star = query.join(WITH_INPUT[0], "Explain the fraction.")
    assert refiner.writes(WITH_INPUT[0], x_star) == "Explain the fraction."
    ids = refiner.prefix_ids(p_x(refiner.reads(WITH_INPUT[0])))
    assert query.split(WITH_INPUT[0])[1].strip() not in refiner.tokenizer.decode(ids)


def test_the_check_judges_the_instruction_not_the_shared_input() -> None:
    """An x' that keeps x's long input but asks for something else is a drift; compared whole,
    the shared input would carry most of x's content words into x'."""
    x = next(p.prompt for p in ALPACA if "\n\n" in p.prompt and len(query.split(p.prompt)[1]) > 80)
    instruction, tail = query.split(x)
    other = "Write a short poem about the sea."
    assert compared(x, other + tail) == (instruction, other)
    assert check(x, other + tail).verdict == "drift"
    assert check(x, x).verdict == "copy"
    assert compared(x, "Something else entirely.") == (x, "Something else entirely.")
