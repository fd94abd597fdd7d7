"""The refiner's stages: `rewrites` (the teacher's x' of D), `warmstart` (ρ_sft), `search`
(round 1's CMA-ES search for ξ*), `train` (Algorithm 1's S rounds, then the last round's
refiner registered as the challenger) and `ablate` (Table 3 without CMA-ES, Figure 3 with
ω = 0). Each reads its inputs, calls the library (recast.refiner, recast.search,
recast.training), writes its outputs and metrics/<stage>.json, and logs to MLflow."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from recast import io, layout, training
from recast.config import Params
from recast.distributed import MapFn, population_evaluator
from recast.errors import RecastError
from recast.generator import make_generator
from recast.plots import write_fitness
from recast.records import PreferencePair
from recast.refiner import teacher
from recast.refiner import warmstart as sft
from recast.refiner.model import Refiner
from recast.refiner.refine import Guard
from recast.search import run_search
from recast.stages.common import load_split, split_inputs, write_metrics
from recast.tracking import Tracker
from recast.training import Reporter


def _train_pairs(params: Params) -> list[PreferencePair]:
    """The first bpo.train_size pairs of D whose query stands alone: the queries the teacher
    rewrites (teacher.teacher_queries)."""
    return teacher.teacher_queries(load_split(params, "train"), params.bpo.train_size)


def rewrites(params: Params) -> dict[str, Any]:
    """Stage `rewrites`: the teacher's rewrites of the first bpo.train_size training queries,
    written to bpo.rewrites (kept as they are when they already hold exactly these)."""
    pairs = _train_pairs(params)
    if not pairs:
        raise RecastError("the train split is empty: nothing for the teacher to rewrite")
    found = teacher.stored(params.bpo, pairs)  # read once: reused as it is, or written anew
    reused = found is not None
    content = found if found is not None else teacher.rewrite_file(params, pairs)
    if not reused:
        io.write_json(params.bpo.rewrites, content)
    rows = [teacher.Rewrite(**row) for row in content["rows"]]
    kept = teacher.keep(rows, params.refiner.guard, params.refiner.check_encoder)
    return write_metrics(
        "rewrites",
        {
            "queries": len(rows),
            "teacher": params.bpo.teacher,
            "teacher_seconds": content.get("teacher_seconds"),
            "reused": reused,
            "reused_rows": len(rows) if reused else content.get("reused_rows", 0),
            **kept.metrics(),
        },
    )


def warmstart(params: Params) -> dict[str, Any]:
    """Stage `warmstart`: ρ_sft from refiner.model and the kept teacher rewrites (bpo.rewrites),
    saved to refiner.warm_start_dir/refiner; with refiner.warm_start off, only a note."""
    out = Path(params.refiner.warm_start_dir)
    if not params.refiner.warm_start:
        io.write_json(out / "skipped.json", {"reason": "refiner.warm_start is false"})
        return write_metrics("warmstart", {"warm_start": False})
    t0 = time.perf_counter()
    pairs = _train_pairs(params)
    refiner, stats, kept, trained_on = sft.train_sft(params, pairs)
    training.save_refiner(refiner, out / "refiner")
    io.write_json(out / "log.json", [dataclasses.asdict(s) for s in stats])
    return write_metrics(
        "warmstart",
        {
            "warm_start": True,
            "queries": len(pairs),
            **kept.metrics(),
            "too_long": len(kept.pairs) - trained_on,
            "trained_on": trained_on,
            "steps": len(stats),
            "first_loss": stats[0].loss,
            "final_loss": stats[-1].loss,
        },
        run={"seconds": round(time.perf_counter() - t0, 1)},
    )


def search(
    params: Params,
    report: Reporter | None = None,
    resume: bool = True,
    fan_out: MapFn | None = None,
) -> dict[str, Any]:
    """Stage `search`: round 1's CMA-ES search from the start refiner, with the fitness F
    (Eq. 11) at ξ = 0 and ξ* on D_es and dev; `fan_out` spreads each population's fitness over
    workers (recast.distributed)."""
    report = report or Reporter()
    es, dev = load_split(params, "es"), load_split(params, "dev")
    start = sft.start_spec(params.refiner)  # ρ_sft with refiner.warm_start, else refiner.model
    report.message(f"loading refiner {start} and generator {params.generator.model}")
    refiner = Refiner.from_params(start, params.refiner)
    generator = make_generator(params.generator)
    try:
        result, space = run_search(
            refiner,
            generator,
            es,
            params.cmaes,
            params.cmaes.out_dir,
            params.refiner.max_refined_tokens,
            resume=resume,
            on_iteration=lambda row: report.iteration(1, row),
            evaluator=fan_out and population_evaluator(params, refiner.source, es, fan_out),
            guard=Guard.from_params(params.refiner),
        )
        xi_star = np.asarray(result.xi_star)
        report.message(f"fitness on the dev split ({len(dev)} pairs) at ξ = 0 and ξ*")
        at_dev = training.dev_fitness_cached(
            refiner, generator, dev, space, params, xi_star, Path(params.cmaes.out_dir)
        )
    finally:
        generator.close()
    metrics = {
        "es_fitness_at_zero": result.fitness_at_zero,
        "es_fitness_at_xi_star": result.best_fitness,
        **at_dev,
        "xi_star_norm": float(np.linalg.norm(xi_star)),
        "iterations": result.iterations,
        "evaluations": result.evaluations,
        "sigma0": space.sigma0,
        "popsize": space.popsize,
        **{f"search_{k}": v for k, v in result.checks.items()},
    }
    out = Path(params.cmaes.out_dir)
    io.write_npy(out / "xi_star.npy", xi_star)
    write_fitness({1: result.history}, out)
    tracker = Tracker(params)
    inputs = split_inputs(params, "es", "dev")
    with tracker.run("search", tags=tracker.lineage_tags(inputs)):
        tracker.log_datasets(inputs)
        tracker.log_params(
            {
                "cmaes": dataclasses.asdict(params.cmaes),
                "generator": dataclasses.asdict(params.generator),
                "refiner": {
                    "model": params.refiner.model,
                    "start": start,
                    "decoding": params.refiner.decoding,
                },
            }
        )
        training.track_search(tracker, "search round-1", result, metrics, out / "xi_star.npy")
    return write_metrics("search", metrics, run={"seconds": result.seconds})


def train(
    params: Params,
    report: Reporter | None = None,
    resume: bool = True,
    fan_out: MapFn | None = None,
) -> dict[str, Any]:
    """Stage `train` (and, with ablation params, `ablate`): Algorithm 1 for refiner.rounds
    rounds, outputs under refiner.out_dir; the last round's refiner of "ours" becomes the
    registry's challenger (an ablation is a comparison, not a candidate)."""
    report = report or Reporter()
    splits = {name: load_split(params, name) for name in ("train", "es", "dev")}
    start = sft.start_spec(params.refiner)  # ρ_sft with refiner.warm_start, else refiner.model
    report.message(f"loading refiner {start} and generator {params.generator.model}")
    refiner = Refiner.from_params(start, params.refiner)
    generator = make_generator(params.generator)
    try:
        trained = training.train(
            params,
            refiner,
            generator,
            splits["train"],
            splits["es"],
            splits["dev"],
            report,
            resume=resume,
            inputs=split_inputs(params, *splits),
            fan_out=fan_out,
        )
    finally:
        generator.close()
    run = {"mlflow_run_id": trained.run_id, **register_challenger(params, trained)}
    summary = trained.summary
    out = Path(params.refiner.out_dir)
    io.write_json(out / "summary.json", summary)
    if params.cmaes.enabled:
        histories = {
            s: io.read_json(layout.search_dir(out, params.cmaes.out_dir, s) / "result.json")[
                "history"
            ]
            for s in range(1, params.refiner.rounds + 1)
        }
        write_fitness(histories, out)
    metrics: dict[str, Any] = {}
    for row in summary["rounds"]:
        metrics.update({f"round_{row['round']}/{k}": v for k, v in row.items() if k != "round"})
    system = training.system_name(params)
    run.update({f"{k}/seconds": v for k, v in trained.seconds.items()})
    write_metrics("train" if system == "ours" else f"train-{system}", metrics, run=run)
    return {**summary, "params": dataclasses.asdict(params), "run": run}


def register_challenger(params: Params, trained: training.Trained) -> dict[str, Any]:
    """The last round's refiner of "ours" as a new registry version with the alias
    'challenger' (the `promote` stage's candidate): {"registered_version": …}, or {} when
    nothing is registered (an ablation, or tracking off)."""
    if trained.model_uri is None or training.system_name(params) != "ours":
        return {}
    version = Tracker(params).register(
        trained.model_uri,
        params.registry.name,
        {
            "train_run_id": trained.run_id,
            "params_hash": trained.summary["config"],
            "rounds": params.refiner.rounds,
        },
    )
    return {"registered_version": version}


def ablation_params(params: Params, variant: str) -> Params:
    """Table 3's training without CMA-ES, or Figure 3's with ω = 0, into its own folder under
    evaluate.ablations_dir. Round 1's search is the `search` stage's, reused."""
    out_dir = str(layout.ablation_dir(params.evaluate.ablations_dir, variant))
    if variant == "no-cmaes":
        return dataclasses.replace(
            params,
            cmaes=dataclasses.replace(params.cmaes, enabled=False),
            refiner=dataclasses.replace(params.refiner, out_dir=out_dir),
        )
    refiner = dataclasses.replace(params.refiner, omega=0.0, out_dir=out_dir)
    return dataclasses.replace(params, refiner=refiner)


def ablate(
    params: Params,
    variant: str,
    report: Reporter | None = None,
    resume: bool = True,
    fan_out: MapFn | None = None,
) -> dict[str, Any]:
    """Stage `ablate@<variant>`: the `train` stage's loop on the ablation's params."""
    return train(ablation_params(params, variant), report, resume, fan_out)
