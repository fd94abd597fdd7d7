"""The `registry` params section, beside recast.promotion (the registry's gate).

Loaded and checked by recast.config (params.yaml, `--set`); each field's docstring says what it
does."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RegistryParams:
    """Stage `promote`: the MLflow model registry's challenger / champion gate."""

    name: str = "recast-refiner"
    """Registered model name; every trained refiner becomes a version with alias 'challenger'."""
    prompter_name: str = "recast-prompter"
    """The same for Align-Pro prompters; their gate is the mean reward on the gate split's
    queries (higher is better)."""
    gate_split: str = "dev"
    """Split the challenger and the champion are compared on (train, es or dev)."""
    gate_metric: str = "dev_fitness"
    """'dev_fitness': mean CE of y_w given x' = p_im(x) under the generator (Eq. 11's F for the
    unbiased refiner, e^b without CMA-ES bias; not the search's ξ = 0), lower is better."""
    margin: float = 0.0
    """The challenger must beat the champion by more than this (nats for dev_fitness)."""
    max_pairs: int | None = 64
    """First N pairs of the gate split (None: all), to bound the gate's cost."""
