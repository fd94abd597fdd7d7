"""Stages `promote` and `promote_prompter`: the registry gate (recast.promotion) for the
refiner or the Align-Pro prompter. metrics/ holds the challenger's gate score, which follows
from the model; the decision depends on what the registry held (its champion, version numbers),
which DVC does not track, so it goes to runs/log/ (and to the registry's version tags)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from recast import promotion
from recast.config import Params
from recast.stages.common import write_metrics


def promote(
    params: Params,
    score: Callable[[Params, str], float] | None = None,
    kind: str = "refiner",
) -> dict[str, Any]:
    """'champion' moves to the 'challenger' of `kind` only if it wins the gate;
    metrics/promote.json (refiner) or metrics/promote-prompter.json."""
    result = promotion.promote(params, score, kind=kind)
    of_model = ("model", "gate_metric", "gate_split", "challenger_score")
    metrics = {k: result[k] for k in of_model}
    run = {k: v for k, v in result.items() if k not in of_model}
    return write_metrics("promote" if kind == "refiner" else f"promote-{kind}", metrics, run=run)
