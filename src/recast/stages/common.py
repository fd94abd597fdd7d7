"""What every stage shares: the metrics folder DVC reads, the splits it reads from, and the
MLflow lineage of its inputs. Only stages write metrics/; the library returns values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recast import io
from recast.config import Params
from recast.data.split import read_split, split_path
from recast.records import PreferencePair

METRICS_DIR = Path("metrics")
"""DVC's metrics files, relative to the working directory as dvc.yaml names them."""


def metrics_path(name: str) -> Path:
    """metrics/<name>.json: the file dvc.yaml lists under the stage's `metrics`."""
    return METRICS_DIR / f"{name}.json"


def write_metrics(name: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """Write metrics/<name>.json atomically and return the metrics unchanged."""
    io.write_json(metrics_path(name), metrics)
    return metrics


def read_metrics(name: str) -> dict[str, Any] | None:
    """metrics/<name>.json, or None if that stage has not run."""
    path = metrics_path(name)
    return io.read_json(path) if path.exists() else None


def load_split(params: Params, name: str) -> list[PreferencePair]:
    """The preference pairs of one split (D, D_es or dev) as params.split places them."""
    return read_split(params.split, name)


def split_inputs(params: Params, *names: str) -> dict[str, Path]:
    """The split files a stage reads, for its MLflow lineage (datasets and DVC md5 tags)."""
    return {name: split_path(params.split, name) for name in names}
