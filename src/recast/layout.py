"""Where each trained thing lives on disk, built in one place: Algorithm 1's rounds under
refiner.out_dir, round 1's search under cmaes.out_dir, and the ablations under
evaluate.ablations_dir. The stages, the evaluation and the CLI all ask here.

    <refiner.out_dir>/round-<s>/refiner        p_im after round s (a HF folder)
    <refiner.out_dir>/round-<s>/search         round s's CMA-ES search (s ≥ 2)
    <cmaes.out_dir>                            round 1's search (the `search` stage's output)
    <evaluate.ablations_dir>/<variant>/...     an ablation's rounds, laid out as above
"""

from __future__ import annotations

from pathlib import Path

from recast.errors import RecastError

ABLATIONS: dict[str, str] = {"no-cmaes": "no_cmaes", "omega-0": "omega_0"}
"""Ablation variant -> its system name. The variant names the folder, the `recast ablate`
argument, the DVC stage and metrics/train-<variant>.json; the system name is how
evaluate.systems lists it (a params value, spelled with underscores). Table 3 trains without
CMA-ES (no-cmaes); Figure 3 with ω = 0 (omega-0)."""
SYSTEM_OF_VARIANT = ABLATIONS
VARIANT_OF_SYSTEM: dict[str, str] = {system: variant for variant, system in ABLATIONS.items()}


def round_dir(out_dir: str | Path, s: int) -> Path:
    """Round s's folder: its refiner, ξ*, pseudo-labels x* and curves."""
    return Path(out_dir) / f"round-{s}"


def refiner_dir(out_dir: str | Path, s: int) -> Path:
    """p_im as fine-tuned at the end of round s."""
    return round_dir(out_dir, s) / "refiner"


def search_dir(out_dir: str | Path, cmaes_out_dir: str | Path, s: int) -> Path:
    """Round s's CMA-ES search: round 1's is the `search` stage's (cmaes.out_dir), reused."""
    return Path(cmaes_out_dir) if s == 1 else round_dir(out_dir, s) / "search"


def ablation_dir(ablations_dir: str | Path, variant: str) -> Path:
    """Where an ablation (a variant name, no-cmaes or omega-0) is trained."""
    if variant not in ABLATIONS:
        raise RecastError(f"unknown ablation {variant!r} (one of {', '.join(ABLATIONS)})")
    return Path(ablations_dir) / variant


def trained_refiner(
    out_dir: str | Path,
    rounds: int,
    what: str = "trained refiner",
    run: str = "`recast train` (or `dvc repro`)",
) -> Path:
    """The last round's refiner under out_dir; a clear error naming what to `run` if it was
    never trained."""
    path = refiner_dir(out_dir, rounds)
    if not (path / "config.json").exists():
        raise RecastError(f"no {what} at {path}: run {run} first")
    return path
