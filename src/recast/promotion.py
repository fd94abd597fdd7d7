"""The model registry's gate: every trained refiner is registered as a version of
`registry.name` with the alias 'challenger' (see `training.train`); `promote` moves the alias
'champion' to it only if it beats the current champion on the gate split by more than the margin.

Both refiners are scored on the same pairs with the same generator. A version's score is kept
in its tags under a key of every params section the gate reads, and reused only under the same
key, so a change of generator or gate split rescores both and never compares numbers measured
under different conditions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from recast import io
from recast.config import Params
from recast.errors import RecastError

GATE_METRICS = ("dev_fitness",)
GATE_SECTIONS = ("split", "registry", "generator", "refiner", "cmaes", "prompter", "reward")
"""The params sections either gate's score reads (a superset: a key too wide only rescores)."""
LOWER_IS_BETTER = {"dev_fitness": True, "dev_reward": False}
KINDS = ("refiner", "prompter")


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    challenger_score: float | None = None
    champion_score: float | None = None


def decide(
    challenger: float, champion: float | None, margin: float, lower_is_better: bool
) -> Decision:
    """Promote when there is no champion, or when the challenger's gain exceeds the margin."""
    if champion is None:
        return Decision(True, "no champion yet", challenger, None)
    gain = champion - challenger if lower_is_better else challenger - champion
    if gain > margin:
        return Decision(True, f"gain {gain:+.4f} > margin {margin}", challenger, champion)
    return Decision(False, f"gain {gain:+.4f} <= margin {margin}", challenger, champion)


def gate_score(params: Params, model_uri: str) -> float:
    """The gate metric of one registered refiner: F (Eq. 11) of the unbiased refiner (e^b on
    [Z_s], [Z_e], no CMA-ES bias) on the gate split, i.e. the mean cross-entropy of y_w given the
    refiner's x' under the frozen generator; with refiner.guard a harmful x' is scored as x."""
    from recast.data.split import read_split
    from recast.generator import make_generator
    from recast.refiner.model import Refiner
    from recast.refiner.refine import Guard
    from recast.search import Fitness

    rp, gp = params.registry, params.refiner
    pairs = read_split(params.split, rp.gate_split)
    pairs = pairs[: rp.max_pairs] if rp.max_pairs else pairs
    refiner = Refiner.from_params(model_uri, gp)
    generator = make_generator(params.generator)
    try:
        fitness = Fitness(
            refiner,
            generator,
            pairs,
            None,
            params.cmaes,
            gp.max_refined_tokens,
            Guard.from_params(gp),
        )
        (score,) = fitness.score_embeddings(refiner.base_embeddings()[None])  # unbiased
    finally:
        generator.close()
    return float(score)


def prompter_gate_score(params: Params, model_uri: str) -> float:
    """An Align-Pro prompter's gate: J(ρ), the mean reward of π_F's answers to x' ~ ρ(·|x) over
    the gate split's queries, with the paper's evaluation sampling."""
    from recast.alignpro import mean_return
    from recast.data.split import read_split

    rp = params.registry
    pairs = read_split(params.split, rp.gate_split)
    queries = [p.prompt for p in (pairs[: rp.max_pairs] if rp.max_pairs else pairs)]
    return mean_return(params, model_uri, queries)


def promote(
    params: Params,
    score: Callable[[Params, str], float] | None = None,
    kind: str = "refiner",
) -> dict[str, Any]:
    """Compare the 'challenger' with the 'champion' and move 'champion' if the gate says so.
    `kind`: 'refiner' (gate: dev fitness, lower wins) or 'prompter' (dev reward, higher wins)."""
    from mlflow.exceptions import MlflowException

    from recast.tracking import use

    rp = params.registry
    if kind not in KINDS:
        raise RecastError(f"unknown model kind {kind!r} (one of {', '.join(KINDS)})")
    if kind == "refiner" and rp.gate_metric not in GATE_METRICS:
        raise RecastError(f"registry.gate_metric {rp.gate_metric!r} is not one of {GATE_METRICS}")
    if not params.tracking.enabled:
        raise RecastError("tracking.enabled is false: there is no registry to promote in")
    name = rp.name if kind == "refiner" else rp.prompter_name
    metric = rp.gate_metric if kind == "refiner" else "dev_reward"
    score = score or (gate_score if kind == "refiner" else prompter_gate_score)
    client = use(params.tracking).MlflowClient()

    def version_of(alias: str) -> str | None:
        try:
            return str(client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            return None

    challenger = version_of("challenger")
    if challenger is None:
        raise RecastError(
            f"no version of {name!r} has the alias 'challenger' at {params.tracking.uri}: "
            f"run `recast {'train' if kind == 'refiner' else 'prompter'}` with tracking enabled"
        )
    # what a version's gate score depends on besides its (immutable) weights: a score kept in
    # the version's tags under the same key is that number again, so it is not recomputed
    key = io.digest(
        {
            "score": getattr(score, "__qualname__", str(score)),
            **{k: dataclasses.asdict(getattr(params, k)) for k in GATE_SECTIONS},
        },
        default=str,
    )

    def scored(version: str) -> float:
        tags = client.get_model_version(name, version).tags
        if tags.get(f"gate.{metric}.key") == key:
            return float(tags[f"gate.{metric}"])
        value = score(params, f"models:/{name}/{version}")
        client.set_model_version_tag(name, version, f"gate.{metric}", repr(value))
        client.set_model_version_tag(name, version, f"gate.{metric}.key", key)
        return value

    champion = version_of("champion")
    # the challenger's score follows from the model alone, whatever the registry holds, so the
    # `promote` stage's metrics file does too
    challenger_score = scored(challenger)
    if champion == challenger:
        decision = Decision(False, "the challenger is already the champion", challenger_score)
    else:
        champion_score = scored(champion) if champion else None
        decision = decide(challenger_score, champion_score, rp.margin, LOWER_IS_BETTER[metric])
    if decision.promote:
        client.set_registered_model_alias(name, "champion", challenger)
    result = {
        "model": name,
        "challenger": challenger,
        "champion_before": champion,
        "champion": challenger if decision.promote else champion,
        "promoted": decision.promote,
        "reason": decision.reason,
        "gate_metric": metric,
        "gate_split": rp.gate_split,
        "challenger_score": decision.challenger_score,
        "champion_score": decision.champion_score,
    }
    return result
