"""A query x as an instruction and the input that follows it.

Many queries are an instruction followed, after a blank line, by the material it is about
("Summarize the paragraph into a sentence.\n\n<paragraph>", "Calculate the area of the
triangle.\n\nBase: 5cm; Height: 6cm"): 24 of the 67 bundled evaluation prompts and 89 of 523
training queries. A refiner whose x' is one paragraph (refiner.decoding = query) and at most
max_refined_tokens long cannot carry that input, so its x' lost it: 23 of those 24 evaluation
prompts were `drift` (the input or its numbers missing) and fell back to x.

With refiner.keep_input, p_im reads and rewrites the instruction alone, and the input is
appended to x' verbatim:

    x = instruction + input       (input: from the first blank line on, or "")
    x' = p_im(instruction) + input

A deviation from the paper, whose P_x holds all of x (docs/method.md, "The input travels
verbatim"); refiner.keep_input = false is the paper's.
"""

from __future__ import annotations

import re

BLANK_LINE = re.compile(r"\n[ \t]*\n")
"""A blank line: where a one-paragraph query ends."""


def split(x: str) -> tuple[str, str]:
    """(instruction, input): the input starts at the first blank line after some text and keeps
    that blank line, so that instruction + input == x."""
    body = x.lstrip()
    m = BLANK_LINE.search(body)
    if m is None or not body[: m.start()].strip():
        return x, ""
    start = len(x) - len(body) + m.start()
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
