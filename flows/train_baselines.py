"""Flow `train-baselines`: what the evaluation compares ours against or scores with, one task
per DVC stage: the reward model, the ablation refiners, BPO, DPO and the Align-Pro prompter."""

from __future__ import annotations

from typing import Any

from prefect import flow

from recast.config import load_params
from recast.layout import ABLATIONS
from tasks import evaluation, prompter


@flow(name="train-baselines")
def train_baselines(
    params_file: str = "params.yaml", overrides: list[str] | None = None
) -> dict[str, Any]:
    p = load_params(params_file, overrides or [])
    reward = evaluation.reward(p)
    ablations = {variant: evaluation.ablate(p, variant) for variant in ABLATIONS}
    bpo = evaluation.bpo(p)
    dpo = evaluation.dpo(p)
    trained = prompter.train(p)  # reused if train-prompter already made it
    return {"reward": reward, "ablations": ablations, "bpo": bpo, "dpo": dpo, "prompter": trained}


if __name__ == "__main__":
    train_baselines()
