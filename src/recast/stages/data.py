"""Stages `ingest`, `pairs`, `validate`, `split` (and `build`, the four in order): read the
raw sources, map and clean them into preference pairs, validate, split into D, D_es and dev.
Each replaces all of its outputs together once it has succeeded (`io.replaced`), or none of
them, and returns the metrics it writes (counts per source, drops per reason, split sizes)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recast import io
from recast.config import Params
from recast.data import build as library
from recast.data.build import VALIDATED_STAMP, require_validated
from recast.data.config import IngestParams, PairsParams, SplitParams, ValidateParams
from recast.errors import ValidationFailed
from recast.records import eval_table, pairs_table
from recast.stages.common import metrics_path

__all__ = ["build", "build_pairs", "ingest", "require_validated", "split", "validate"]


def ingest(params: IngestParams) -> dict[str, Any]:
    """Every raw source into data/ingest/{train,eval}/<name>.parquet (origin, raw JSON)."""
    counts: dict[str, dict[str, int]] = {"train": {}, "eval": {}}
    jobs = library.ingest_jobs(params)
    with io.replaced(params.out_dir, metrics_path("ingest")) as (new_out, new_metrics):
        for kind, name in jobs:
            table = library.raw_table(params, name)
            io.write_parquet(new_out / kind / f"{name}.parquet", table)
            counts[kind][name] = table.num_rows
        metrics = {"raw_records": counts}
        io.write_json(new_metrics, metrics)
    return metrics


def build_pairs(ingest_dir: str | Path, params: PairsParams) -> dict[str, Any]:
    """Raw tables -> cleaned preference pairs and eval prompts (data/pairs/*.parquet)."""
    built = library.build_pairs(ingest_dir, params)
    out = Path(params.out_dir)
    outputs = (out / "pairs.parquet", out / "eval.parquet", metrics_path("pairs"))
    with io.replaced(*outputs) as (new_pairs, new_eval, new_metrics):
        io.write_parquet(new_pairs, pairs_table(built.pairs))
        io.write_parquet(new_eval, eval_table(built.prompts))
        io.write_json(new_metrics, built.metrics)
    return built.metrics


def validate(pairs_dir: str | Path, params: ValidateParams, languages: list[str]) -> dict[str, Any]:
    """Run the Great Expectations suites; on success stamp the validated files' hashes so the
    split stage can refuse data that was never validated or changed since."""
    from recast.data.validate import validate_and_report

    files = library.input_files(pairs_dir)
    stamp = Path(pairs_dir) / VALIDATED_STAMP
    with io.replaced(stamp, metrics_path("validate")) as (new_stamp, new_metrics):
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
        io.write_json(new_stamp, library.stamp(files))
    return metrics


def split(pairs_dir: str | Path, params: SplitParams) -> dict[str, Any]:
    """Validated pairs -> data/splits/{train,es,dev}.parquet, and the eval prompts beside them."""
    parts, prompts = library.split(pairs_dir, params)
    sizes = {name: len(pairs) for name, pairs in parts.items()}
    per_set = Counter(p.set for p in prompts)
    metrics = {"sizes": sizes, "eval_sets": dict(sorted(per_set.items()))}
    with io.replaced(params.out_dir, metrics_path("split")) as (new_out, new_metrics):
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
