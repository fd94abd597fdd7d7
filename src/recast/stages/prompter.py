"""Align-Pro's stages: `prompter` (ρ by GRPO at prompter.lam, its oracle, J and Δ1, Δ2 of
Eq. 7; ρ registered as the challenger prompter), `prompter_sweep` (one ρ per λ, not
registered) and `prompter_report` (reports/prompter/). The training and measuring is
recast.alignpro's; here: reuse of a finished run, result.json, MLflow, metrics."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from recast import alignpro, io
from recast.config import Params
from recast.errors import RecastError
from recast.stages.common import (
    load_split,
    read_metrics,
    split_inputs,
    write_metrics,
    write_run_log,
)
from recast.tracking import Tracker

REPORT_DIR = Path("reports") / "prompter"


def prompter(
    params: Params,
    lam: float | None = None,
    out_dir: str | None = None,
    oracle: bool = True,
    register: bool = True,
    resume: bool = True,
    known: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    """Stage `prompter`: ρ trained at λ (default prompter.lam) into out_dir (default
    prompter.out_dir) and measured (recast.alignpro.train); reused as it is when result.json
    holds a run with the same inputs. With tracking on, an MLflow run holds the curve, every J
    and Δ, and ρ as a model; with `register`, ρ becomes the registry's 'challenger' prompter.
    The run's seconds and MLflow id go to runs/log/<stage>.json, not result.json (a DVC output).
    `known`: J(π_F) and J(ρ_sft) per query from an earlier λ (alignpro.train)."""
    pp = params.prompter
    lam = pp.lam if lam is None else lam
    out = Path(out_dir or pp.out_dir)
    key = alignpro.key(params, lam, oracle)
    if resume and (out / "result.json").exists() and (out / "model" / "config.json").exists():
        done = io.read_json(out / "result.json")
        if done.get("key") == key:  # the same inputs trained this prompter already
            return done
    train = [p.prompt for p in load_split(params, "train")][: pp.train_size]
    measured = alignpro.train(params, train, _dev_queries(params), lam, out, oracle, known)
    run = {"seconds": measured.pop("seconds")}
    result: dict[str, Any] = {}
    for name, value in measured.items():  # the key beside the dev figures, as it always was
        result[name] = value
        if name == "dev_queries":
            result["key"] = key
    io.write_json(out / "result.json", result)
    run["mlflow_run_id"] = _track(params, result, lam, out, register, run["seconds"])
    write_run_log("prompter" if register else f"prompter_sweep-lambda-{lam:g}", run)
    return {**result, **run}


def _track(
    params: Params, result: dict[str, Any], lam: float, out: Path, register: bool, seconds: float
) -> str | None:
    pp = params.prompter
    tracker = Tracker(params)
    inputs = split_inputs(params, "train", "dev")
    tags = {**tracker.lineage_tags(inputs), "system": "alignpro", "lambda": f"{lam:g}"}
    with tracker.run(f"prompter λ={lam:g} seed={pp.seed}", tags=tags) as run_id:
        tracker.log_datasets(inputs)
        tracker.log_params({"prompter": dataclasses.asdict(pp), "lambda": lam})
        for row in result["curve"]:
            tracker.log_metrics({"reward": row["reward"], "kl": row["kl"] or 0.0}, row["step"])
        tracker.log_metrics(
            {k: v for k, v in result.items() if k.startswith(("J_", "reward_var", "kl_to"))}
        )
        tracker.log_metrics({"seconds": seconds})
        for name in ("delta_1", "delta_2", "gain_over_sft"):
            if name in result:
                tracker.log_metrics({name: result[name]["mean"]})
        tracker.log_artifact(out / "result.json")
        if register and params.tracking.log_checkpoints:
            from recast.models.load import load_causal_lm

            model, tokenizer = load_causal_lm(str(out / "model"), "float32", "cpu")
            uri = tracker.log_refiner(model, tokenizer, out / "model", name="prompter")
            if uri:
                tracker.register(uri, params.registry.prompter_name, {"run_id": run_id})
    return run_id


def sweep(params: Params) -> dict[str, Any]:
    """Stage `prompter_sweep`: one prompter per λ in prompter.lambdas under prompter.sweep_dir;
    reward J(ρ) against KL(ρ ‖ ρ_sft)."""
    rows = []
    # J(π_F), J(ρ_sft) per query: the same for every λ, so measured once (by the prompter
    # stage, or for the first λ)
    known = _measured_returns(params)
    for lam in params.prompter.lambdas:
        out = str(Path(params.prompter.sweep_dir) / f"lambda-{lam:g}")
        # not registered: the sweep maps the trade-off, its prompters are not candidates
        r = prompter(params, lam, out, oracle=False, register=False, known=known)
        if known is None and "returns" in r:  # (an old result.json has none)
            known = {k: r["returns"][k] for k in ("frozen", "sft")}
        rows.append({"lambda": lam, "J_prompter": r["J_prompter"], "kl_to_sft": r["kl_to_sft"]})
    return write_metrics("prompter_sweep", {"rows": rows})


def _dev_queries(params: Params) -> list[str]:
    """The dev queries J and the KL are measured on: the first prompter.dev_size of dev."""
    return [p.prompt for p in load_split(params, "dev")][: params.prompter.dev_size]


def _measured_returns(params: Params) -> dict[str, list[float]] | None:
    """The prompter stage's J(π_F) and J(ρ_sft) per query, when its result.json measured them
    on what the sweep would (alignpro.returns_key); else None."""
    main = Path(params.prompter.out_dir) / "result.json"
    if not main.exists():
        return None
    done = io.read_json(main)
    if done.get("returns_key") != alignpro.returns_key(params, _dev_queries(params)):
        return None
    return {k: done["returns"][k] for k in ("frozen", "sft")}


def report(params: Params) -> dict[str, Any]:
    """Stage `prompter_report`: reports/prompter/report.md with the reward curve, the λ sweep
    and J, Δ1, Δ2; metrics/prompter.json holds its numbers."""
    main = Path(params.prompter.out_dir) / "result.json"
    if not main.exists():
        raise RecastError(f"{main} is missing: run `recast prompter` first")
    result = io.read_json(main)
    swept = read_metrics("prompter_sweep")
    written = alignpro.write_report(
        params.prompter, result, swept["rows"] if swept else [], REPORT_DIR
    )
    metrics = {
        k: v for k, v in result.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    for name in ("delta_1", "delta_2", "gain_over_sft"):
        if name in result:
            metrics[name] = result[name]["mean"]
    write_metrics("prompter", metrics)
    return {"report": str(written)}
