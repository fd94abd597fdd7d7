"""Stages `promote` and `promote_prompter`: the registry gate (recast.promotion) for the
refiner or the Align-Pro prompter, with its decision written to metrics/."""

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
    return write_metrics("promote" if kind == "refiner" else f"promote-{kind}", result)
