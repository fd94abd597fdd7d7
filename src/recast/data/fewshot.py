"""The few-shot examples of the rewrite teacher's prompt (recast.refiner.teacher), and the rule
that keeps them out of every evaluation.

They are BPO-test items whose optimized_prompt differs from prompt (BPO-test items 0-2, which
the first three-shot trials used, are two identity rewrites out of three and taught the teacher
to copy: issue 12). BPO-test is an evaluation set, and its prompts must never be training
examples of something evaluated on them, so the `pairs` stage drops these items from bpo_test
(counted as `teacher_example` in metrics/pairs.json): the teacher's rewrites train BPO's
optimizer and the refiner's warm start ρ_sft, and both are evaluated on bpo_test.

Items 6, 13 and 16 of the release (verbatim from the bundled first 20, Apache-2.0,
eval-samples/LICENSE-BPO). Item 8 ("Describe a game of chance." -> "..., including examples
and how the outcome is determined.") was the first example until the teacher was seen pasting
it: whole, as its x' for 14 of 64 queries (12 of them follow-up turns without their
conversation), and its generic tail onto 6 more (rewrites.json before 2026-11-26).
"""

from __future__ import annotations

import unicodedata

EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "Generate a creative way of advertising a new razor product.",
        "Generate a creative and compelling advertisement for a new razor product.",
    ),
    (
        "Name an animal whose average life span is 5 years.",
        "Provide an example of an animal with an average lifespan of 5 years.",
    ),
    (
        "Come up with a name for an app for creating digital art.",
        "Come up with a creative app name for a digital art creation application and provide a "
        "brief explanation for the chosen name to make it engaging and memorable.",
    ),
)
"""(x, x') for the teacher's prompt: BPO-test items 6, 13, 16 (prompt, optimized_prompt)."""
BPO_TEST_ITEMS = (6, 13, 16)


def _key(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


_PROMPTS = frozenset(_key(x) for x, _ in EXAMPLES)


def is_example(prompt: str) -> bool:
    """The prompt is one of the teacher's few-shot examples (up to case and whitespace)."""
    return _key(prompt) in _PROMPTS
