"""Stage `main` (`recast main`, the last stage of `make run`): ours against ORG on every
bundled evaluation prompt with the configured judge, then the run's summary, saved and returned.

It is the `evaluate` stage restricted to main.systems and writing under main.out_dir, so the
main job and the full reproduction judge in exactly the same way."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recast import io
from recast.config import Params
from recast.errors import RecastError
from recast.evaluation.run import eval_prompts
from recast.evaluation.summary import examples, render
from recast.stages.common import metrics_path, read_metrics
from recast.stages.evaluate import evaluate


def _metrics(stage: str) -> Any:
    """metrics/<stage>.json, or an error that says which stage to run."""
    found = read_metrics(stage)
    if found is None:
        raise RecastError(
            f"{metrics_path(stage)} is missing: run `dvc repro {stage}` first (or `make run`)"
        )
    return found


def main(params: Params, log: Callable[[str], None] = lambda _: None) -> str:
    """Evaluate main.systems (ours vs each), write main.out_dir/{results.json, summary.txt} and
    metrics/main.json, and return the summary's text."""
    m = params.main
    if "ours" not in m.systems or "org" not in m.systems:
        raise RecastError(f"main.systems={m.systems}: the main job compares 'ours' with 'org'")
    # what the summary reads besides the evaluation: checked before the evaluation's minutes
    data = {
        "sources": _metrics("pairs")["sources"],
        "sizes": _metrics("split")["sizes"],
    }
    train_summary = Path(params.refiner.out_dir) / "summary.json"
    if not train_summary.exists():
        raise RecastError(f"{train_summary} is missing: run `dvc repro train` first")
    train = io.read_json(train_summary)
    warm = None
    if params.refiner.warm_start:
        warm = _metrics("warmstart")
    p = dataclasses.replace(
        params, evaluate=dataclasses.replace(params.evaluate, systems=m.systems, out_dir=m.out_dir)
    )
    result = evaluate(p, log, stage="main", metrics="main")

    out = Path(m.out_dir)
    judged = io.read_json(out / "judgments" / "ours_vs_org.json")
    outcomes: dict[str, list[str | None]] = defaultdict(list)
    for row in judged:
        outcomes[row["set"]].append(row["outcome"])
    sets = {
        name: {
            "prompts": [e.prompt for e in eval_prompts(p, name)],
            **{
                system: io.read_json(out / "answers" / name / f"{system}.json")["answers"]
                for system in ("org", "ours")
            },
        }
        for name in p.evaluate.sets
    }
    text = render(data, train, warm, result, examples(sets, outcomes, m.examples), m.width)
    io.write_text(out / "summary.txt", text + "\n")
    return text
