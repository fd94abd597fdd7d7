"""Flow `train-prompter`: data stages, the reward model, Align-Pro's GRPO prompter with its
oracle, the λ sweep, the report, then the registry gate (with tracking on)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.build_data import build_data
from recast.config import load_params
from tasks import evaluation, prompter


@flow(name="train-prompter")
def train_prompter(
    params_file: str = "params.yaml", overrides: list[str] | None = None
) -> dict[str, Any]:
    p = load_params(params_file, overrides or [])
    build_data(params_file, overrides)
    evaluation.reward(p)
    trained = prompter.train(p)
    swept = prompter.sweep(p)
    written = prompter.report(p)
    promoted = prompter.promote(p) if p.tracking.enabled else None
    return {"prompter": trained, "sweep": swept, "report": written, "promote": promoted}


if __name__ == "__main__":
    train_prompter()
