"""Pieces shared by the source modules: drops, hub / URL readers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from recast.data.raw import Malformed, RawRecord
from recast.errors import DataError


@dataclass(frozen=True)
class Drop:
    """A raw record (or group) that yields no pair, and why; counted in the stage metrics."""

    reason: str
    origin: str
    detail: str = ""


def malformed(origin: str, error: Malformed) -> Drop:
    return Drop("malformed", origin, str(error))


def hub_records(
    dataset_id: str, split: str, limit: int | None, **kwargs: Any
) -> Iterator[RawRecord]:
    """Rows of a hub dataset via `datasets.load_dataset` (network; used only when asked for)."""
    import datasets  # lazy: slow import, and only the hub path needs it

    try:
        ds = datasets.load_dataset(dataset_id, split=split, **kwargs)
    except Exception as e:  # the datasets library raises many types; name the dataset
        raise DataError(f"cannot load hub dataset {dataset_id!r} (split {split!r}): {e}") from e
    for i, row in enumerate(ds):
        if limit is not None and i >= limit:
            return
        yield f"hub:{dataset_id}/{kwargs.get('data_dir') or ''}/{split}#{i}", dict(row)


def url_records(url: str, limit: int | None, timeout_s: float = 120.0) -> Iterator[RawRecord]:
    """Records of a JSON array or JSON-lines file at an official download URL."""
    import httpx

    try:
        response = httpx.get(url, timeout=timeout_s, follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPError as e:
        raise DataError(f"cannot download {url}: {e}") from e
    text = response.text
    if url.endswith(".jsonl"):
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        rows = json.loads(text)
    for i, row in enumerate(rows[:limit] if limit is not None else rows):
        yield f"{url}#{i}", row
