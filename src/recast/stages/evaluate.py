"""Stages `evaluate` and `report`: every system answers the evaluation sets and the judge
compares ours with each (recast.evaluation.run); then results.json, the judgments per prompt,
metrics/eval.json and an MLflow run; and the report (Markdown, HTML, plots) from them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from recast import io
from recast.config import Params
from recast.errors import RecastError
from recast.evaluation import report as report_lib
from recast.evaluation.judging import judge_name
from recast.evaluation.results import flat_metrics
from recast.evaluation.run import Log, MapSets, eval_prompts, evaluate_set
from recast.evaluation.run import evaluate as run_evaluation
from recast.stages.common import read_metrics, read_run_log, write_metrics
from recast.tracking import Tracker

__all__ = ["eval_prompts", "evaluate", "evaluate_set", "report"]


def _quiet(_: str) -> None:
    pass


def evaluate(
    params: Params,
    log: Log = _quiet,
    map_sets: MapSets | None = None,
    *,
    stage: str = "evaluate",
    metrics: str = "eval",
) -> dict[str, Any]:
    """Stage `evaluate`: the evaluation (in this process, or its sets fanned out by
    `map_sets`), written to evaluate.out_dir (results.json, judgments/) and metrics/eval.json,
    and logged to MLflow (its run id in runs/log/<metrics>.json). Returns the results with the
    process each set ran in. The `main` stage runs the same evaluation under its own MLflow
    `stage` name and `metrics` file."""
    done = run_evaluation(params, log, map_sets)
    out = Path(params.evaluate.out_dir)
    for comparison, rows in done.judgments.items():
        io.write_json(out / "judgments" / f"{comparison}.json", rows)
    result = done.result
    io.write_json(out / "results.json", result)
    run = {"mlflow_run_id": _track(params, result, stage)}
    write_metrics(metrics, flat_metrics(result), run=run)
    return {**result, **run, "workers": done.workers}  # pids: not worth a file


def _track(params: Params, result: dict[str, Any], stage: str = "evaluate") -> str | None:
    """An MLflow run `evaluate`: every cell, the judge's agreement, rewards and costs; tagged
    with the training run and refiner it judged, so each table cell traces back."""
    tracker = Tracker(params)
    tags = {
        "stage": stage,
        "judge": judge_name(params),
        "refiner": params.evaluate.refiner or "last round",
    }
    trained = read_run_log("train")  # the training run this evaluation judged, if it ran here
    if trained.get("mlflow_run_id"):
        tags["train_run_id"] = trained["mlflow_run_id"]
    with tracker.run(stage, tags=tags) as run_id:
        tracker.log_params({"evaluate": dataclasses.asdict(params.evaluate)})
        tracker.log_metrics({k.replace("/", "."): v for k, v in flat_metrics(result).items()})
    return run_id


def report(params: Params) -> dict[str, Any]:
    """Stage `report`: reports/eval/report.md and report.html, with the plots, from the
    `evaluate` stage's results.json and the `reward` stage's metrics."""
    out = Path(params.evaluate.out_dir)
    path = out / "results.json"
    if not path.exists():
        raise RecastError(f"{path} is missing: run `recast eval` first")
    return report_lib.write_report(params, io.read_json(path), read_metrics("reward"), out)
