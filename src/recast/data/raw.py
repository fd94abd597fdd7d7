"""Reading raw dumps (.json arrays, .jsonl, .jsonl.gz) with errors that name file and line."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from recast.errors import DataError

RawRecord = tuple[str, dict[str, Any]]
"""(origin, record): origin is 'file:line' (jsonl) or 'file#index' (json array)."""


class Malformed(Exception):
    """A raw record lacks a field or has the wrong type; the caller adds where it came from."""


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{where}: not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})"
        ) from e


def read_records(path: str | Path, limit: int | None = None) -> Iterator[RawRecord]:
    """Yield the JSON objects of one raw file, at most `limit` of them."""
    path = Path(path)
    name = path.name
    if not path.exists():
        raise DataError(f"raw file not found: {path}")
    opener = gzip.open if name.endswith(".gz") else open
    stem = name.removesuffix(".gz")
    count = 0
    if stem.endswith(".jsonl"):
        with opener(path, "rb") as f:
            for lineno, line in enumerate(f, start=1):
                if limit is not None and count >= limit:
                    return
                where = f"{path}:{lineno}"
                text = _decode(line, where).strip()
                if not text:
                    continue
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as e:
                    raise DataError(
                        f"{where}: broken JSON line: {e.msg} at column {e.colno}"
                    ) from e
                if not isinstance(obj, dict):
                    raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
                count += 1
                yield where, obj
    elif stem.endswith(".json"):
        with opener(path, "rb") as f:
            text = _decode(f.read(), str(path))
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: broken JSON: {e.msg} at column {e.colno}") from e
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON array of records, got {type(data).__name__}")
        for index, obj in enumerate(data[:limit] if limit is not None else data):
            where = f"{path}#{index}"
            if not isinstance(obj, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            yield where, obj
    else:
        raise DataError(f"{path}: unsupported raw file type (expected .json, .jsonl, .jsonl.gz)")


def field(record: dict[str, Any], name: str, kind: type | tuple[type, ...] = str) -> Any:
    """record[name], checked for presence and type; raises Malformed naming the field."""
    if name not in record:
        raise Malformed(f"missing field '{name}'")
    value = record[name]
    if not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise Malformed(f"field '{name}' should be {expected}, got {type(value).__name__}")
    return value


def optional(record: dict[str, Any], name: str, kind: type | tuple[type, ...] = str) -> Any:
    """Like `field`, but a missing or null value is None."""
    if record.get(name) is None:
        return None
    return field(record, name, kind)
