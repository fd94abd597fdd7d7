"""OpenAssistant OASST1 message trees (flat rows: message_id, parent_id, text, role, lang, rank).

For each prompter message with at least two ranked assistant replies, one pair: the rank-0
reply is y+, the lowest-ranked reply is y- (the widest margin the rankers gave). The prompter
message is x; the turns above it, back to the tree's root, are the context.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from recast.data.common import Drop, hub_records, malformed
from recast.data.raw import Malformed, RawRecord, field, optional
from recast.records import PreferencePair, Turn

NAME = "oasst1"
LOCAL_PATTERNS = ("oasst1/*.jsonl", "oasst1/*.jsonl.gz")
HUB_ID = "OpenAssistant/oasst1"
_ROLE = {"prompter": "user", "assistant": "assistant"}


def fetch(limit: int | None, split: str = "train") -> Iterator[RawRecord]:
    yield from hub_records(HUB_ID, split, limit)


def _message(record: dict[str, Any]) -> dict[str, Any]:
    role = field(record, "role")
    if role not in _ROLE:
        raise Malformed(f"field 'role' should be prompter/assistant, got {role!r}")
    rank = optional(record, "rank", (int, float))
    return {
        "id": field(record, "message_id"),
        "parent": optional(record, "parent_id"),
        "text": field(record, "text"),
        "role": role,
        "lang": field(record, "lang"),
        "rank": None if rank is None else int(rank),
        "deleted": bool(optional(record, "deleted", bool)),
        "tree": optional(record, "message_tree_id"),
    }


def to_pairs(records: Iterable[RawRecord]) -> Iterator[PreferencePair | Drop]:
    messages: dict[str, dict[str, Any]] = {}
    origins: dict[str, str] = {}
    for origin, record in records:
        try:
            msg = _message(record)
        except Malformed as e:
            yield malformed(origin, e)
            continue
        if msg["deleted"]:
            continue  # deleted messages are not part of the released trees
        messages[msg["id"]] = msg
        origins[msg["id"]] = origin

    replies: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for msg in messages.values():
        if msg["role"] == "assistant" and msg["parent"] is not None:
            replies[msg["parent"]].append(msg)

    for parent_id in sorted(replies):  # sorted: output order must not depend on dict order
        parent = messages.get(parent_id)
        origin = origins.get(parent_id, parent_id)
        if parent is None or parent["role"] != "prompter":
            yield Drop("parent_missing", origin)
            continue
        ranked = sorted(
            (m for m in replies[parent_id] if m["rank"] is not None),
            key=lambda m: (m["rank"], m["id"]),
        )
        if len(ranked) < 2:
            yield Drop("fewer_than_two_ranked_replies", origin)
            continue
        context: list[Turn] = []
        up = parent["parent"]
        while up is not None and up in messages:
            context.append(Turn(_ROLE[messages[up]["role"]], messages[up]["text"]))
            up = messages[up]["parent"]
        if up is not None:
            yield Drop("context_incomplete", origin)
            continue
        yield PreferencePair(
            source=NAME,
            prompt=parent["text"],
            chosen=ranked[0]["text"],
            rejected=ranked[-1]["text"],
            context=tuple(reversed(context)),
            lang=parent["lang"],
            meta={
                "origin": origin,
                "message_id": parent_id,
                "chosen_id": ranked[0]["id"],
                "rejected_id": ranked[-1]["id"],
                "tree": parent["tree"],
            },
        )
