"""LMSYS Chatbot Arena conversations: {question_id, model_a, model_b, winner, conversation_a,
conversation_b, turn, language, …}.

winner model_a / model_b gives y+ / y-; ties and both-bad are dropped and counted. Only
single-turn battles are kept: in a multi-turn battle the two sides' earlier assistant turns
differ, so there is no one context to condition both answers on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from recast.data.common import Drop, hub_records, malformed
from recast.data.raw import Malformed, RawRecord, field
from recast.records import PreferencePair

NAME = "chatbot_arena"
LOCAL_PATTERNS = ("chatbot-arena/*.jsonl", "chatbot-arena/*.json", "chatbot-arena/*.jsonl.gz")
HUB_ID = "lmsys/chatbot_arena_conversations"  # gated on the hub: needs an accepted licence

_LANG = {
    "English": "en",
    "Chinese": "zh",
    "German": "de",
    "French": "fr",
    "Spanish": "es",
    "Russian": "ru",
    "Japanese": "ja",
    "Portuguese": "pt",
    "Italian": "it",
    "Korean": "ko",
}
_DROP = {"tie": "tie", "tie (bothbad)": "tie_bothbad"}


def fetch(limit: int | None, split: str = "train") -> Iterator[RawRecord]:
    yield from hub_records(HUB_ID, split, limit)


def _turns(record: dict[str, Any], name: str) -> list[dict[str, str]]:
    conv = field(record, name, list)
    for i, turn in enumerate(conv):
        if not isinstance(turn, dict) or not isinstance(turn.get("content"), str):
            raise Malformed(f"{name}[{i}] should be an object with a string 'content'")
        if turn.get("role") not in ("user", "assistant"):
            raise Malformed(f"{name}[{i}].role should be user/assistant")
    return conv


def to_pairs(records: Iterable[RawRecord]) -> Iterator[PreferencePair | Drop]:
    for origin, record in records:
        try:
            winner = field(record, "winner")
            conv_a, conv_b = _turns(record, "conversation_a"), _turns(record, "conversation_b")
            turn = field(record, "turn", int)
            language = field(record, "language")
        except Malformed as e:
            yield malformed(origin, e)
            continue
        if winner in _DROP:
            yield Drop(_DROP[winner], origin)
            continue
        if winner not in ("model_a", "model_b"):
            yield malformed(origin, Malformed(f"field 'winner' has unknown value {winner!r}"))
            continue
        if turn != 1 or len(conv_a) != 2 or len(conv_b) != 2:
            yield Drop("multi_turn", origin)
            continue
        if conv_a[0]["content"] != conv_b[0]["content"]:
            yield Drop("context_mismatch", origin)
            continue
        win, lose = (conv_a, conv_b) if winner == "model_a" else (conv_b, conv_a)
        yield PreferencePair(
            source=NAME,
            prompt=conv_a[0]["content"],
            chosen=win[1]["content"],
            rejected=lose[1]["content"],
            lang=_LANG.get(language, language.lower()),
            meta={
                "origin": origin,
                "question_id": record.get("question_id"),
                "model_chosen": record.get(winner),
                "model_rejected": record.get("model_b" if winner == "model_a" else "model_a"),
            },
        )
