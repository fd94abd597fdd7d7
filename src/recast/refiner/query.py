"""A query x as an instruction and the input that follows it.

Many queries are an instruction followed, on the next lines, by the material it is about
("Summarize the paragraph into a sentence.\n\n<paragraph>", "Classify the following words
related to fruits.\nTomato, pineapple, mango"): 35 of the 67 bundled evaluation prompts. A
refiner whose x' is one paragraph (refiner.decoding = query) of at most max_refined_tokens
cannot carry that input, so its x' lost it: 23 of the 24 evaluation prompts with a blank line
got an x' without the input (`drift`: the input or its numbers missing) and fell back to x, and
once the split was at the blank line, 7 of the 11 with a single line break still did.

With refiner.keep_input, p_im reads and rewrites the instruction (x's first line) alone, and the
input (the rest of x, from the first line break on) is appended to x' verbatim:

    x = instruction + input       (input: from the first line break on, or "")
    x' = p_im(instruction) + input

A deviation from the paper, whose P_x holds all of x (docs/method.md, "The input travels
verbatim"); refiner.keep_input = false is the paper's.
"""

from __future__ import annotations

import re

BLANK_LINE = re.compile(r"\n[ \t]*\n")
"""A blank line: where a one-paragraph x' ends (recast.refiner.model.Decoding)."""


def split(x: str) -> tuple[str, str]:
    """(instruction, input): the input starts at the first line break after some text and keeps
    that line break, so that instruction + input == x."""
    body = x.lstrip()
    head = body.split("\n", 1)[0]
    if len(head) == len(body) or not head.strip():
        return x, ""
    start = len(x) - len(body) + len(head)
    return x[:start], x[start:]


def instruction(x: str) -> str:
    """The part of x the refiner rewrites."""
    return split(x)[0]


def join(x: str, rewritten: str) -> str:
    """x' from the rewritten instruction: x's input appended verbatim (nothing to append to an
    empty rewrite, which the guard rejects as it is)."""
    tail = split(x)[1]
    return rewritten.rstrip() + tail if tail and rewritten.strip() else rewritten


def rewritten_part(x: str, x_prime: str) -> str:
    """The part of x' that was written in place of x's instruction: x' without x's input when x'
    ends with it (as `join` builds it), else x' whole."""
    tail = split(x)[1]
    if tail and x_prime.endswith(tail) and len(x_prime) > len(tail):
        return x_prime[: -len(tail)]
    return x_prime
