"""The two record types every data source is mapped into, and their parquet schemas.

A preference pair is (x, context, y+, y-): the paper's query x, the prior turns, and the
preferred / dispreferred answers. An eval prompt is one query of an evaluation set.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from recast import io

TURN = pa.struct([("role", pa.string()), ("text", pa.string())])

PAIR_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("prompt", pa.string()),
        ("context", pa.list_(TURN)),
        ("chosen", pa.string()),
        ("rejected", pa.string()),
        ("lang", pa.string()),
        ("meta", pa.string()),  # JSON: provenance (file, line, source ids)
    ]
)

EVAL_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("set", pa.string()),
        ("prompt", pa.string()),
        ("reference", pa.string()),  # null where the set has none (Vicuna)
        ("meta", pa.string()),
    ]
)


def content_id(*parts: Any) -> str:
    """Stable id: the same content gets the same id on every machine and every run."""
    return io.digest(parts, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    text: str


@dataclass(frozen=True)
class PreferencePair:
    """One preference record: x (prompt), its context, y+ (chosen) and y- (rejected)."""

    source: str
    prompt: str
    chosen: str
    rejected: str
    context: tuple[Turn, ...] = ()
    lang: str = "en"
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def id(self) -> str:
        ctx = [(t.role, t.text) for t in self.context]
        return content_id(self.source, ctx, self.prompt, self.chosen, self.rejected)

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "prompt": self.prompt,
            "context": [asdict(t) for t in self.context],
            "chosen": self.chosen,
            "rejected": self.rejected,
            "lang": self.lang,
            "meta": json.dumps(self.meta, ensure_ascii=False, sort_keys=True),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> PreferencePair:
        return cls(
            source=row["source"],
            prompt=row["prompt"],
            chosen=row["chosen"],
            rejected=row["rejected"],
            context=tuple(Turn(**t) for t in row["context"] or ()),
            lang=row["lang"],
            meta=json.loads(row["meta"]) if row.get("meta") else {},
        )


@dataclass(frozen=True)
class EvalPrompt:
    """One query of an evaluation set, with its reference answer where the set has one."""

    set: str
    prompt: str
    reference: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def id(self) -> str:
        return content_id(self.set, self.prompt)

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "set": self.set,
            "prompt": self.prompt,
            "reference": self.reference,
            "meta": json.dumps(self.meta, ensure_ascii=False, sort_keys=True),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> EvalPrompt:
        return cls(
            set=row["set"],
            prompt=row["prompt"],
            reference=row.get("reference"),
            meta=json.loads(row["meta"]) if row.get("meta") else {},
        )


def pairs_table(pairs: list[PreferencePair]) -> pa.Table:
    return pa.Table.from_pylist([p.row() for p in pairs], schema=PAIR_SCHEMA)


def eval_table(prompts: list[EvalPrompt]) -> pa.Table:
    return pa.Table.from_pylist([p.row() for p in prompts], schema=EVAL_SCHEMA)


def pairs_from_table(table: pa.Table) -> list[PreferencePair]:
    return [PreferencePair.from_row(r) for r in table.to_pylist()]


def eval_from_table(table: pa.Table) -> list[EvalPrompt]:
    return [EvalPrompt.from_row(r) for r in table.to_pylist()]
