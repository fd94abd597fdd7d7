"""Anthropic HH-RLHF: {chosen, rejected} whole "\\n\\nHuman: … \\n\\nAssistant: …" transcripts.

x is the last human turn, earlier turns are the context, and the two final assistant replies
are y+ (from `chosen`) and y- (from `rejected`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from recast.data.common import Drop, hub_records, malformed
from recast.data.raw import Malformed, RawRecord, field
from recast.records import PreferencePair, Turn

NAME = "hh_rlhf"
LOCAL_PATTERNS = ("hh-rlhf/*.jsonl.gz", "hh-rlhf/*.jsonl")
HUB_ID = "Anthropic/hh-rlhf"
HUB_SUBSETS = ("harmless-base", "helpful-base", "helpful-online", "helpful-rejection-sampled")

_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")
_ROLE = {"Human": "user", "Assistant": "assistant"}


def fetch(limit: int | None, split: str = "train") -> Iterator[RawRecord]:
    for subset in HUB_SUBSETS:
        yield from hub_records(HUB_ID, split, limit, data_dir=subset)


def parse_transcript(text: str) -> list[Turn]:
    """Split a transcript into turns; it must start with a Human turn."""
    parts = _TURN.split(text)
    if parts[0].strip():
        raise Malformed("transcript does not start with a '\\n\\nHuman:' turn")
    return [
        Turn(_ROLE[role], body.strip()) for role, body in zip(parts[1::2], parts[2::2], strict=True)
    ]


def to_pairs(records: Iterable[RawRecord]) -> Iterator[PreferencePair | Drop]:
    for origin, record in records:
        try:
            chosen = parse_transcript(field(record, "chosen"))
            rejected = parse_transcript(field(record, "rejected"))
        except Malformed as e:
            yield malformed(origin, e)
            continue
        if len(chosen) < 2 or chosen[-1].role != "assistant" or chosen[-2].role != "user":
            yield Drop("not_user_then_assistant", origin)
            continue
        if chosen[:-1] != rejected[:-1] or rejected[-1].role != "assistant":
            yield Drop("context_mismatch", origin)
            continue
        yield PreferencePair(
            source=NAME,
            prompt=chosen[-2].text,
            chosen=chosen[-1].text,
            rejected=rejected[-1].text,
            context=tuple(chosen[:-2]),
            lang="",  # not declared by the release: detected in cleaning
            meta={"origin": origin},
        )
