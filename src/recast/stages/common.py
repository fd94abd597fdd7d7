"""What every stage shares: the metrics folder DVC reads, the run log beside it, the splits it
reads from, and the MLflow lineage of its inputs. Only stages write metrics/ and runs/log/; the
library returns values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recast import io
from recast.config import Params
from recast.data.split import read_split, split_path
from recast.records import PreferencePair

METRICS_DIR = Path("metrics")
"""DVC's metrics files, relative to the working directory as dvc.yaml names them."""


RUN_LOG_DIR = Path("runs") / "log"
"""What each stage's last run was like: clock times, MLflow run ids, the registry's aliases.
These are facts of one run, not functions of the stage's inputs, so they stay out of DVC's
outputs (a fresh clone that reruns a stage gets the same dvc.lock) and out of git (`runs/` is
ignored); MLflow keeps them for every run."""


def metrics_path(name: str) -> Path:
    """metrics/<name>.json: the file dvc.yaml lists under the stage's `metrics`."""
    return METRICS_DIR / f"{name}.json"


def write_metrics(
    name: str, metrics: dict[str, Any], run: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write metrics/<name>.json atomically: what follows from the stage's inputs, so the same
    inputs write the same bytes. `run` (seconds, MLflow ids, registry state) goes to
    runs/log/<name>.json instead. Returns both, merged, for printing."""
    io.write_json(metrics_path(name), metrics)
    if run is not None:
        write_run_log(name, run)
    return {**metrics, **(run or {})}


def write_run_log(name: str, run: dict[str, Any]) -> None:
    """Write runs/log/<name>.json atomically: the facts of this run of the stage."""
    io.write_json(RUN_LOG_DIR / f"{name}.json", run)


def read_run_log(name: str) -> dict[str, Any]:
    """runs/log/<name>.json: the facts of the stage's last run here ({} if it has none)."""
    path = RUN_LOG_DIR / f"{name}.json"
    return io.read_json(path) if path.exists() else {}


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
