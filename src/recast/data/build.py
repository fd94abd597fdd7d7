"""The data library behind the four data stages (recast.stages.data): raw records from the
bundled samples, a local folder or the hubs; pairs and eval prompts cleaned, deduplicated and
counted; the validation stamp; the split. Nothing here writes a stage's outputs."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa

from recast import io
from recast.data import alpaca_gpt4, chatbot_arena, eval_sets, hh_rlhf, oasst1
from recast.data.clean import clean_pairs, normalize
from recast.data.common import Drop
from recast.data.config import IngestParams, PairsParams, SplitParams
from recast.data.raw import RawRecord, read_records
from recast.data.split import split_pairs
from recast.errors import DataError
from recast.records import (
    EvalPrompt,
    PreferencePair,
    eval_from_table,
    pairs_from_table,
)

SOURCES: dict[str, ModuleType] = {m.NAME: m for m in (hh_rlhf, oasst1, alpaca_gpt4, chatbot_arena)}
RAW_SCHEMA = pa.schema([("origin", pa.string()), ("raw", pa.string())])
VALIDATED_STAMP = "validated.json"


def _check_names(names: list[str], known: Any, what: str) -> None:
    for name in names:
        if name not in known:
            raise DataError(f"unknown {what} {name!r} (known: {', '.join(known)})")


def _local_files(root: Path, patterns: tuple[str, ...], what: str) -> list[Path]:
    files = sorted({f for pattern in patterns for f in root.glob(pattern)})
    if not files:
        raise DataError(f"no raw files for {what} under {root} (looked for {', '.join(patterns)})")
    return files


def _raw_records(params: IngestParams, name: str) -> Iterator[RawRecord]:
    """Raw records of one training source or eval set, from the hub / URL or a local folder."""
    is_eval = name in eval_sets.FILES
    if params.source == "hub":
        yield from (
            eval_sets.fetch(name, params.max_records)
            if is_eval
            else SOURCES[name].fetch(params.max_records)
        )
        return
    if params.source != "local":
        raise DataError(f"ingest.source must be 'local' or 'hub', got {params.source!r}")
    root = Path(params.root)
    if not root.is_dir():
        raise DataError(f"ingest.root {root} is not a folder")
    if is_eval:
        files = _local_files(root, (f"{eval_sets.LOCAL_DIR}/{eval_sets.FILES[name]}",), name)
    else:
        files = _local_files(root, SOURCES[name].LOCAL_PATTERNS, name)
    for path in files:
        yield from read_records(path, params.max_records)


def raw_table(params: IngestParams, name: str) -> pa.Table:
    """One training source or eval set as a table of (origin, raw JSON) rows."""
    rows = [
        {"origin": o, "raw": json.dumps(r, ensure_ascii=False)}
        for o, r in _raw_records(params, name)
    ]
    if not rows:
        raise DataError(f"{name}: no raw records found")
    return pa.Table.from_pylist(rows, RAW_SCHEMA)


def ingest_jobs(params: IngestParams) -> list[tuple[str, str]]:
    """(kind, name) of every table ingest writes: kind is train (a source) or eval (a set)."""
    _check_names(params.sources, SOURCES, "training source")
    _check_names(params.eval_sets, eval_sets.FILES, "eval set")
    return [("train", n) for n in params.sources] + [("eval", n) for n in params.eval_sets]


def _read_raw(path: Path) -> list[RawRecord]:
    if not path.exists():
        raise DataError(f"{path} is missing: run the ingest stage first")
    return [(r["origin"], json.loads(r["raw"])) for r in io.read_parquet(path).to_pylist()]


def _split_drops(items: Iterator[Any], on_malformed: str, drops: Counter[str]) -> list[Any]:
    """Separate records from Drops; a malformed record stops the stage unless told to drop."""
    kept = []
    for item in items:
        if isinstance(item, Drop):
            if item.reason == "malformed" and on_malformed == "error":
                raise DataError(
                    f"{item.origin}: malformed record: {item.detail} "
                    "(set pairs.on_malformed=drop to skip and count such records)"
                )
            drops[item.reason] += 1
        else:
            kept.append(item)
    return kept


def token_counter(spec: str) -> Callable[[list[str]], list[int]]:
    from recast.models.load import load_tokenizer

    tokenizer = load_tokenizer(spec)

    def count(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    return count


def _dedup_across(pairs: list[PreferencePair], per_source: dict[str, Any]) -> list[PreferencePair]:
    """The same prompt from two sources is still one x: keep the first, count the rest."""
    seen: set[str] = set()
    kept = []
    for pair in pairs:
        key = normalize(pair.prompt)
        if key in seen:
            entry = per_source[pair.source]
            entry["pairs"] -= 1
            entry["drops"]["duplicate_prompt"] = entry["drops"].get("duplicate_prompt", 0) + 1
            continue
        seen.add(key)
        kept.append(pair)
    return kept


@dataclass
class Built:
    """The pairs stage's result: cleaned pairs, eval prompts, and what was kept and dropped."""

    pairs: list[PreferencePair]
    prompts: list[EvalPrompt]
    metrics: dict[str, Any]


def build_pairs(ingest_dir: str | Path, params: PairsParams) -> Built:
    """Raw tables -> cleaned preference pairs and eval prompts, with counts per source and set
    and drops per reason."""
    if params.on_malformed not in ("error", "drop"):
        raise DataError(f"pairs.on_malformed must be error or drop, got {params.on_malformed!r}")
    ingest_dir = Path(ingest_dir)
    count_tokens = token_counter(params.tokenizer)
    all_pairs: list[PreferencePair] = []
    per_source: dict[str, Any] = {}
    for path in sorted((ingest_dir / "train").glob("*.parquet")):
        name = path.stem
        drops: Counter[str] = Counter()
        parsed = _split_drops(SOURCES[name].to_pairs(_read_raw(path)), params.on_malformed, drops)
        kept = clean_pairs(parsed, params, count_tokens, drops)
        all_pairs.extend(kept)
        per_source[name] = {"pairs": len(kept), "drops": dict(sorted(drops.items()))}
    if not per_source:
        raise DataError(f"no ingested training sources under {ingest_dir / 'train'}")
    unique = _dedup_across(all_pairs, per_source)
    prompts: list[EvalPrompt] = []
    per_set: dict[str, Any] = {}
    for path in sorted((ingest_dir / "eval").glob("*.parquet")):
        drops = Counter()
        items = _split_drops(
            eval_sets.to_prompts(path.stem, _read_raw(path)), params.on_malformed, drops
        )
        prompts.extend(items)
        per_set[path.stem] = {"prompts": len(items), "drops": dict(drops)}
    metrics = {"total_pairs": len(unique), "sources": per_source, "eval_sets": per_set}
    return Built(unique, prompts, metrics)


def input_files(pairs_dir: str | Path) -> dict[str, Path]:
    """The files validation checks and stamps: pairs.parquet and eval.parquet."""
    pairs_dir = Path(pairs_dir)
    files = {name: pairs_dir / f"{name}.parquet" for name in ("pairs", "eval")}
    for path in files.values():
        if not path.exists():
            raise DataError(f"{path} is missing: run the pairs stage first")
    return files


def stamp(files: dict[str, Path]) -> dict[str, str]:
    """The validated files' hashes, which split checks (require_validated)."""
    return {name: io.sha256_file(path) for name, path in files.items()}


def require_validated(pairs_dir: Path) -> None:
    """Nothing downstream runs on data that failed validation or changed after it."""
    stamp = pairs_dir / VALIDATED_STAMP
    if not stamp.exists():
        raise DataError(f"{pairs_dir} has not passed validation: run the validate stage first")
    for name, digest in io.read_json(stamp).items():
        if io.sha256_file(pairs_dir / f"{name}.parquet") != digest:
            raise DataError(f"{pairs_dir / name}.parquet changed after validation: validate again")


def split(pairs_dir: str | Path, params: SplitParams) -> tuple[dict[str, Any], list[EvalPrompt]]:
    """Validated pairs -> {train: D, es: D_es, dev} and the eval prompts, unchanged."""
    pairs_dir = Path(pairs_dir)
    require_validated(pairs_dir)
    parts = split_pairs(pairs_from_table(io.read_parquet(pairs_dir / "pairs.parquet")), params)
    prompts = eval_from_table(io.read_parquet(pairs_dir / "eval.parquet"))
    return parts, prompts
