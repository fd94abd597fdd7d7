"""The `tracking` params section, beside recast.tracking (MLflow).

Loaded and checked by recast.config (params.yaml, `--set`); each field's docstring says what it
does."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrackingParams:
    """MLflow lineage of training runs."""

    enabled: bool = True
    """Log runs to MLflow (False: nothing is logged)."""
    uri: str = "sqlite:///mlruns.db"
    """Tracking URI: a local SQLite file, or a server such as http://127.0.0.1:5000."""
    experiment: str = "recast"
    """One experiment per project."""
    artifacts: str = "mlartifacts"
    """Artifact folder for a new experiment ('' lets the server choose)."""
    log_checkpoints: bool = True
    """Log each round's refiner as an MLflow transformers model (hundreds of MB per round);
    needed by the registry (the last round's is registered)."""
