"""The four evaluation sets of the paper (as released in BPO's data/testset/)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from recast.data.common import Drop, malformed, url_records
from recast.data.fewshot import is_example
from recast.data.raw import Malformed, RawRecord, field, optional
from recast.records import EvalPrompt

BPO_TESTSET_URL = "https://raw.githubusercontent.com/thu-coai/BPO/main/data/testset/"
FILES = {
    "bpo_test": "bpo_test.json",
    "dolly_eval": "dolly_eval.json",
    "vicuna_eval": "vicuna_eval.jsonl",
    "self_instruct_eval": "self_instruct_eval.json",
}
LOCAL_DIR = "eval-samples"


def fetch(name: str, limit: int | None) -> Iterator[RawRecord]:
    yield from url_records(BPO_TESTSET_URL + FILES[name], limit)


def _with_context(instruction: str, context: str | None) -> str:
    return f"{instruction}\n\n{context}" if context and context.strip() else instruction


def _bpo(r: dict[str, Any]) -> EvalPrompt:
    return EvalPrompt(
        "bpo_test",
        field(r, "prompt"),
        field(r, "good_res"),
        {"bad_res": field(r, "bad_res"), "optimized_prompt": optional(r, "optimized_prompt")},
    )


def _dolly(r: dict[str, Any]) -> EvalPrompt:
    return EvalPrompt(
        "dolly_eval",
        _with_context(field(r, "instruction"), optional(r, "context")),
        field(r, "response"),
        {"category": optional(r, "category")},
    )


def _vicuna(r: dict[str, Any]) -> EvalPrompt:
    return EvalPrompt(
        "vicuna_eval",
        field(r, "text"),
        None,
        {
            "question_id": optional(r, "question_id", (int, str)),
            "category": optional(r, "category"),
        },
    )


def _self_instruct(r: dict[str, Any]) -> EvalPrompt:
    return EvalPrompt(
        "self_instruct_eval",
        _with_context(field(r, "instruction"), optional(r, "context")),
        optional(r, "output"),
        {"id": optional(r, "id"), "category": optional(r, "category")},
    )


PARSERS: dict[str, Callable[[dict[str, Any]], EvalPrompt]] = {
    "bpo_test": _bpo,
    "dolly_eval": _dolly,
    "vicuna_eval": _vicuna,
    "self_instruct_eval": _self_instruct,
}


def to_prompts(name: str, records: Iterable[RawRecord]) -> Iterator[EvalPrompt | Drop]:
    parse = PARSERS[name]
    for origin, record in records:
        try:
            prompt = parse(record)
        except Malformed as e:
            yield malformed(origin, e)
            continue
        if name == "bpo_test" and is_example(prompt.prompt):
            # a few-shot example of the rewrite teacher is never an evaluation prompt
            yield Drop("teacher_example", origin, "a few-shot example of the rewrite teacher")
            continue
        yield EvalPrompt(
            prompt.set, prompt.prompt, prompt.reference, {**prompt.meta, "origin": origin}
        )
