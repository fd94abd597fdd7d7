"""Flow `evaluate`: what the systems need (reward model, ablation refiners, BPO optimizer, DPO
model, Align-Pro prompter), every comparison judged, then the report; as `dvc repro` runs
them."""

from __future__ import annotations

from typing import Any

from prefect import flow

from recast import runs
from recast.config import load_params
from tasks import evaluation, prompter


@flow(name="evaluate")
def evaluate(
    params_file: str = "params.yaml", overrides: list[str] | None = None
) -> dict[str, Any]:
    p = load_params(params_file, overrides or [])
    reward = evaluation.reward(p)
    for variant in runs.ABLATIONS:
        evaluation.ablate(p, variant)
    evaluation.bpo(p)
    evaluation.dpo(p)
    prompter.train(p)  # Align-Pro's prompter (reused if train-prompter already made it)
    result = evaluation.evaluate(p)
    written = evaluation.report(p)
    return {"reward": reward, "cells": result["cells"], "report": written["report"]}


if __name__ == "__main__":
    evaluate()
