"""The four data stages, called alike by the DVC stages, the CLI and the Prefect tasks:
ingest -> pairs -> validate -> split. Each replaces all of its outputs together once it has
succeeded (`io.replaced`), or none of them, and returns the metrics it also writes as JSON
(counts per source, drops per reason, split sizes)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa

from recast import io
from recast.config import IngestParams, PairsParams, Params, SplitParams, ValidateParams
from recast.data import alpaca_gpt4, chatbot_arena, eval_sets, hh_rlhf, oasst1
from recast.data.clean import clean_pairs, normalize
from recast.data.common import Drop
from recast.data.raw import RawRecord, read_records
from recast.data.split import split_pairs
from recast.errors import DataError, ValidationFailed
from recast.records import (
    EvalPrompt,
    PreferencePair,
    eval_from_table,
    eval_table,
    pairs_from_table,
    pairs_table,
)

SOURCES: dict[str, ModuleType] = {m.NAME: m for m in (hh_rlhf, oasst1, alpaca_gpt4, chatbot_arena)}
RAW_SCHEMA = pa.schema([("origin", pa.string()), ("raw", pa.string())])
METRICS_DIR = Path("metrics")
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


def ingest(params: IngestParams) -> dict[str, Any]:
    """Read every raw source into data/ingest/{train,eval}/<name>.parquet (origin, raw JSON)."""
    _check_names(params.sources, SOURCES, "training source")
    _check_names(params.eval_sets, eval_sets.FILES, "eval set")
    out = Path(params.out_dir)
    counts: dict[str, dict[str, int]] = {"train": {}, "eval": {}}
    jobs = [("train", n) for n in params.sources] + [("eval", n) for n in params.eval_sets]
    with io.replaced(out, METRICS_DIR / "ingest.json") as (new_out, new_metrics):
        for kind, name in jobs:
            rows = [
                {"origin": o, "raw": json.dumps(r, ensure_ascii=False)}
                for o, r in _raw_records(params, name)
            ]
            if not rows:
                raise DataError(f"{name}: no raw records found")
            table = pa.Table.from_pylist(rows, RAW_SCHEMA)
            io.write_parquet(new_out / kind / f"{name}.parquet", table)
            counts[kind][name] = len(rows)
        metrics = {"raw_records": counts}
        io.write_json(new_metrics, metrics)
    return metrics


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


def build_pairs(ingest_dir: str | Path, params: PairsParams) -> dict[str, Any]:
    """Raw tables -> cleaned preference pairs and eval prompts (data/pairs/*.parquet)."""
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
    out = Path(params.out_dir)
    metrics = {"total_pairs": len(unique), "sources": per_source, "eval_sets": per_set}
    outputs = (out / "pairs.parquet", out / "eval.parquet", METRICS_DIR / "pairs.json")
    with io.replaced(*outputs) as (new_pairs, new_eval, new_metrics):
        io.write_parquet(new_pairs, pairs_table(unique))
        io.write_parquet(new_eval, eval_table(prompts))
        io.write_json(new_metrics, metrics)
    return metrics


def validate(pairs_dir: str | Path, params: ValidateParams, languages: list[str]) -> dict[str, Any]:
    """Run the Great Expectations suites; on success stamp the validated files' hashes so the
    split stage can refuse data that was never validated or changed since."""
    from recast.data.validate import validate_and_report

    pairs_dir = Path(pairs_dir)
    stamp = pairs_dir / VALIDATED_STAMP
    files = {name: pairs_dir / f"{name}.parquet" for name in ("pairs", "eval")}
    for path in files.values():
        if not path.exists():
            raise DataError(f"{path} is missing: run the pairs stage first")
    with io.replaced(stamp, METRICS_DIR / "validate.json") as (new_stamp, new_metrics):
        try:
            # Replaces the report even when it raises ValidationFailed: it explains the failure.
            results = validate_and_report(
                io.read_parquet(files["pairs"]), io.read_parquet(files["eval"]), params, languages
            )
        except ValidationFailed:
            io.remove(stamp)  # an old success must not outlive a failed validation
            raise
        metrics = {"suites": {r.name: {"success": r.success, "rows": r.rows} for r in results}}
        io.write_json(new_metrics, metrics)
        io.write_json(new_stamp, {name: io.sha256_file(path) for name, path in files.items()})
    return metrics


def require_validated(pairs_dir: Path) -> None:
    """Nothing downstream runs on data that failed validation or changed after it."""
    stamp = pairs_dir / VALIDATED_STAMP
    if not stamp.exists():
        raise DataError(f"{pairs_dir} has not passed validation: run the validate stage first")
    for name, digest in io.read_json(stamp).items():
        if io.sha256_file(pairs_dir / f"{name}.parquet") != digest:
            raise DataError(f"{pairs_dir / name}.parquet changed after validation: validate again")


def split(pairs_dir: str | Path, params: SplitParams) -> dict[str, Any]:
    """Validated pairs -> data/splits/{train,es,dev}.parquet, and the eval prompts beside them."""
    pairs_dir = Path(pairs_dir)
    require_validated(pairs_dir)
    parts = split_pairs(pairs_from_table(io.read_parquet(pairs_dir / "pairs.parquet")), params)
    prompts = eval_from_table(io.read_parquet(pairs_dir / "eval.parquet"))
    sizes = {name: len(pairs) for name, pairs in parts.items()}
    per_set = Counter(p.set for p in prompts)
    metrics = {"sizes": sizes, "eval_sets": dict(sorted(per_set.items()))}
    with io.replaced(params.out_dir, METRICS_DIR / "split.json") as (new_out, new_metrics):
        for name, pairs in parts.items():
            io.write_parquet(new_out / f"{name}.parquet", pairs_table(pairs))
        io.write_parquet(new_out / "eval.parquet", eval_table(prompts))
        io.write_json(new_metrics, metrics)
    return metrics


def build(params: Params, progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """All four stages in order, as `dvc repro` runs them, as one: if a stage fails, the ones
    before it are undone too, so data/ingest, data/pairs and data/splits stay from one build
    (a failed validation's report is kept: the error points at it)."""
    with io.undoable():
        progress("ingest")
        metrics = {"ingest": ingest(params.ingest)}
        progress("pairs")
        metrics["pairs"] = build_pairs(params.ingest.out_dir, params.pairs)
        progress("validate")
        metrics["validate"] = validate(
            params.pairs.out_dir, params.validate, params.pairs.languages
        )
        progress("split")
        metrics["split"] = split(params.pairs.out_dir, params.split)
    return metrics
