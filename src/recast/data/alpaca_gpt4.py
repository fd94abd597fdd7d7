"""Alpaca-GPT4 comparison data, in either published schema.

- The release's `comparison_data_v2.json`: {user_input, responses_and_scores: [{response,
  score, source}]}; y+ is the highest-scored response, y- the lowest; equal scores are a tie.
- The converted schema (LLaMA-Factory): {instruction, input, output: [chosen, rejected]}.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from recast.data.common import Drop, malformed, url_records
from recast.data.raw import Malformed, RawRecord, field
from recast.records import PreferencePair

NAME = "alpaca_gpt4"
LOCAL_PATTERNS = ("alpaca-gpt4/*.json", "alpaca-gpt4/*.jsonl")
URL = (
    "https://raw.githubusercontent.com/Instruction-Tuning-with-GPT-4/GPT-4-LLM/main/"
    "data/comparison_data_v2.json"
)


def fetch(limit: int | None, split: str = "train") -> Iterator[RawRecord]:
    yield from url_records(URL, limit)


def _from_v2(record: dict[str, Any]) -> tuple[str, str, str] | str:
    prompt = field(record, "user_input")
    scored = []
    for i, item in enumerate(field(record, "responses_and_scores", list)):
        if not isinstance(item, dict):
            raise Malformed(f"responses_and_scores[{i}] should be an object")
        text = field(item, "response")
        if text.strip():
            scored.append((float(field(item, "score", (int, float, str))), text))
    if len(scored) < 2:
        return "fewer_than_two_responses"
    scored.sort(key=lambda s: s[0])
    if scored[0][0] == scored[-1][0]:
        return "tied_scores"
    return prompt, scored[-1][1], scored[0][1]


def _from_converted(record: dict[str, Any]) -> tuple[str, str, str]:
    instruction = field(record, "instruction")
    extra = record.get("input") or ""
    if not isinstance(extra, str):
        raise Malformed(f"field 'input' should be str, got {type(extra).__name__}")
    output = field(record, "output", list)
    if len(output) != 2 or not all(isinstance(o, str) for o in output):
        raise Malformed("field 'output' should be [chosen, rejected] strings")
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    return prompt, output[0], output[1]


def to_pairs(records: Iterable[RawRecord]) -> Iterator[PreferencePair | Drop]:
    for origin, record in records:
        try:
            parsed = _from_v2(record) if "user_input" in record else _from_converted(record)
        except Malformed as e:
            yield malformed(origin, e)
            continue
        if isinstance(parsed, str):
            yield Drop(parsed, origin)
            continue
        prompt, chosen, rejected = parsed
        yield PreferencePair(
            source=NAME,
            prompt=prompt,
            chosen=chosen,
            rejected=rejected,
            lang="",
            meta={"origin": origin},
        )
