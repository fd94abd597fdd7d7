"""The refiner's stages, called alike by the CLI (hence DVC) and the Prefect tasks:
`search` (one CMA-ES search, round 1) and `train` (Algorithm 1's S rounds)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from recast import io
from recast.config import Params
from recast.data.stages import METRICS_DIR
from recast.distributed import MapFn, population_evaluator
from recast.errors import RecastError
from recast.generator import make_generator
from recast.plots import write_fitness
from recast.records import PreferencePair, pairs_from_table
from recast.refiner.model import Refiner
from recast.refiner.refine import Guard
from recast.refiner.warmstart import start_spec
from recast.search import run_search
from recast.tracking import Tracker
from recast.training import Reporter, dev_fitness, system_name, track_search, train


def load_split(params: Params, name: str) -> list[PreferencePair]:
    path = Path(params.split.out_dir) / f"{name}.parquet"
    if not path.exists():
        raise RecastError(f"{path} is missing: run `dvc repro split` or `recast data build` first")
    return pairs_from_table(io.read_parquet(path))


def search_stage(
    params: Params,
    report: Reporter | None = None,
    resume: bool = True,
    fan_out: MapFn | None = None,
) -> dict:
    """Round 1's CMA-ES search from the base refiner, with F(0) and F(ξ*) on D_es and dev;
    `fan_out` spreads each population's fitness over workers (recast.distributed)."""
    report = report or Reporter()
    es, dev = load_split(params, "es"), load_split(params, "dev")
    start = start_spec(params)  # ρ_sft with refiner.warm_start, else refiner.model
    report.message(f"loading refiner {start} and generator {params.generator.model}")
    refiner = Refiner.from_params(start, params.refiner)
    generator = make_generator(params.generator)
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
    metrics = {
        "es_fitness_at_zero": result.fitness_at_zero,
        "es_fitness_at_xi_star": result.best_fitness,
        **dev_fitness(refiner, generator, dev, space, params, xi_star),
        "xi_star_norm": float(np.linalg.norm(xi_star)),
        "iterations": result.iterations,
        "evaluations": result.evaluations,
        "seconds": result.seconds,
        "sigma0": space.sigma0,
        "popsize": space.popsize,
        **{f"search_{k}": v for k, v in result.checks.items()},
    }
    out = Path(params.cmaes.out_dir)
    io.write_npy(out / "xi_star.npy", xi_star)
    write_fitness({1: result.history}, out)
    tracker = Tracker(params)
    split_dir = Path(params.split.out_dir)
    inputs = {name: split_dir / f"{name}.parquet" for name in ("es", "dev")}
    with tracker.run("search", tags=tracker.lineage_tags(inputs)):
        tracker.log_datasets(inputs)
        tracker.log_params(
            {
                "cmaes": asdict(params.cmaes),
                "generator": asdict(params.generator),
                "refiner": {
                    "model": params.refiner.model,
                    "start": start,
                    "decoding": params.refiner.decoding,
                },
            }
        )
        track_search(tracker, "search round-1", result, metrics, out / "xi_star.npy")
    io.write_json(METRICS_DIR / "search.json", metrics)
    generator.close()
    return metrics


def train_stage(
    params: Params,
    report: Reporter | None = None,
    resume: bool = True,
    fan_out: MapFn | None = None,
) -> dict:
    """Algorithm 1 for refiner.rounds rounds; per-round outputs under refiner.out_dir."""
    report = report or Reporter()
    splits = {name: load_split(params, name) for name in ("train", "es", "dev")}
    start = start_spec(params)  # ρ_sft with refiner.warm_start, else refiner.model
    report.message(f"loading refiner {start} and generator {params.generator.model}")
    refiner = Refiner.from_params(start, params.refiner)
    generator = make_generator(params.generator)
    split_dir = Path(params.split.out_dir)
    inputs = {name: split_dir / f"{name}.parquet" for name in splits}
    summary = train(
        params,
        refiner,
        generator,
        splits["train"],
        splits["es"],
        splits["dev"],
        report,
        resume=resume,
        inputs=inputs,
        fan_out=fan_out,
    )
    out = Path(params.refiner.out_dir)
    if params.cmaes.enabled:
        histories = {}
        for r in range(1, params.refiner.rounds + 1):
            folder = Path(params.cmaes.out_dir) if r == 1 else out / f"round-{r}" / "search"
            histories[r] = io.read_json(folder / "result.json")["history"]
        write_fitness(histories, out)
    metrics: dict[str, Any] = {}
    for row in summary["rounds"]:
        metrics.update({f"round_{row['round']}/{k}": v for k, v in row.items() if k != "round"})
    system = system_name(params)
    io.write_json(
        METRICS_DIR / ("train.json" if system == "ours" else f"train-{system}.json"), metrics
    )
    generator.close()
    return {**summary, "params": asdict(params)}


def final_checkpoint(params: Params) -> Path:
    """The last round's refiner folder."""
    path = Path(params.refiner.out_dir) / f"round-{params.refiner.rounds}" / "refiner"
    if not (path / "config.json").exists():
        raise RecastError(f"no trained refiner at {path}: run `recast train` (or `dvc repro`)")
    return path


ABLATIONS = ("no-cmaes", "omega-0")


def ablation_params(params: Params, variant: str) -> Params:
    """Table 3's training without CMA-ES, or Figure 3's with ω = 0, into its own folder under
    evaluate.ablations_dir. Round 1's search is the `search` stage's, reused."""
    from dataclasses import replace

    if variant not in ABLATIONS:
        raise RecastError(f"unknown ablation {variant!r} (one of {', '.join(ABLATIONS)})")
    out_dir = str(Path(params.evaluate.ablations_dir) / variant)
    if variant == "no-cmaes":
        return replace(
            params,
            cmaes=replace(params.cmaes, enabled=False),
            refiner=replace(params.refiner, out_dir=out_dir),
        )
    return replace(params, refiner=replace(params.refiner, omega=0.0, out_dir=out_dir))
