"""MLflow lineage: one experiment, a parent run per training run, nested runs per round and per
CMA-ES search; every ξ*, fitness curve, pseudo-label set and checkpoint logged, with tags that
lead back to the inputs (git commit, DVC md5 of each data file, params hash).

`Tracker` is a no-op when tracking is disabled, so the library never needs an `if` around it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from recast.config import Params


def flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists become JSON text (MLflow params are strings)."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list):
            out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


def params_hash(params: Params) -> str:
    blob = json.dumps(dataclasses.asdict(params), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def dvc_md5(path: str | Path) -> str:
    """The md5 DVC records for a file in dvc.lock, so a run can be matched to its inputs."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


class Tracker:
    """Logs to MLflow when enabled; every method is a no-op otherwise."""

    def __init__(self, params: Params) -> None:
        self.params = params
        self.enabled = params.tracking.enabled
        if self.enabled:
            import mlflow

            os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
            mlflow.set_tracking_uri(params.tracking.uri)
            if mlflow.get_experiment_by_name(params.tracking.experiment) is None:
                mlflow.create_experiment(
                    params.tracking.experiment, artifact_location=params.tracking.artifacts or None
                )
            mlflow.set_experiment(params.tracking.experiment)
            self.mlflow = mlflow

    @contextlib.contextmanager
    def run(self, name: str, tags: dict[str, str] | None = None) -> Iterator[str | None]:
        """A run, nested under the active one if any; yields its id (None when disabled)."""
        if not self.enabled:
            yield None
            return
        nested = self.mlflow.active_run() is not None
        with self.mlflow.start_run(run_name=name, nested=nested, tags=tags or {}) as active:
            yield active.info.run_id

    def lineage_tags(self, inputs: dict[str, Path]) -> dict[str, str]:
        tags = {"git_commit": git_commit(), "params_hash": params_hash(self.params)}
        tags.update({f"dvc_md5.{name}": dvc_md5(path) for name, path in inputs.items()})
        return tags

    def log_params(self, params: dict[str, Any]) -> None:
        if self.enabled:
            self.mlflow.log_params(flatten(params))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self.enabled:
            clean = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
            self.mlflow.log_metrics(clean, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if not self.enabled:
            return
        path = Path(path)
        if path.is_dir():
            self.mlflow.log_artifacts(str(path), artifact_path=artifact_path or path.name)
        else:
            self.mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def set_tags(self, tags: dict[str, Any]) -> None:
        if self.enabled:
            self.mlflow.set_tags({k: str(v) for k, v in tags.items()})
