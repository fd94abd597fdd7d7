"""MLflow lineage: one experiment, a parent run per training run, nested runs per round and per
CMA-ES search; every ξ*, fitness curve, pseudo-label set and checkpoint logged, with tags that
lead back to the inputs (git commit, DVC md5 of each data file, params hash). The experiment
is marked as model training, so MLflow 3's UI opens it on the runs table, and each split a run
reads is logged as an MLflow dataset input whose source is its DVC path and md5.

`Tracker` is a no-op when tracking is disabled, so the library never needs an `if` around it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from recast import io
from recast.config import Params
from recast.tracking_config import TrackingParams

# MLflow 3's UI reads this experiment tag to pick its layout: without it, an experiment opens on
# the GenAI overview (traces, token usage), which is empty here. "custom_model_development" is
# the value the UI itself sets when a user picks "Machine learning" (mlflow/server/js: the
# ExperimentKind enum; it maps to the machine-learning workflow, whose landing page is the runs).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# The mlflow.data.context of each split's dataset input, as the runs table shows it.
SPLIT_CONTEXTS = {"train": "training", "es": "search", "dev": "validation"}
DVC_SOURCE_TYPE = "dvc"


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


def resolved_uri(uri: str) -> str:
    """A relative `sqlite:///file.db` made absolute: MLflow caches its store per URI string, so
    a relative one would keep pointing at the first folder it was used from."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).resolve())
    return uri


def use(tp: TrackingParams) -> Any:
    """Point MLflow at tracking.uri; returns the mlflow module."""
    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    mlflow.set_tracking_uri(resolved_uri(tp.uri))
    return mlflow


def params_hash(params: Params) -> str:
    return io.digest(dataclasses.asdict(params))


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


@functools.cache
def dvc_source_class() -> type:
    """An MLflow dataset source for a file DVC tracks: its path in the repo and its md5 as in
    dvc.lock (registered with MLflow once, so `mlflow.data.get_source` reads it back)."""
    from mlflow.data.dataset_source import DatasetSource
    from mlflow.data.dataset_source_registry import register_dataset_source

    class DvcDatasetSource(DatasetSource):
        def __init__(self, path: str, md5: str) -> None:
            self.path, self.md5 = path, md5

        @staticmethod
        def _get_source_type() -> str:
            return DVC_SOURCE_TYPE

        def load(self) -> str:
            """The local path, after checking it is still the version that was logged."""
            if not Path(self.path).is_file() or dvc_md5(self.path) != self.md5:
                raise FileNotFoundError(f"{self.path} with md5 {self.md5} (try `dvc checkout`)")
            return self.path

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return False  # only built from a path and md5, never guessed from a string

        @classmethod
        def _resolve(cls, raw_source: Any) -> DvcDatasetSource:
            # MLflow's abstract API; never reached, since _can_resolve refuses every string
            raise ValueError(
                f"a dvc dataset source is built from a path and its md5, not from {raw_source!r}"
            )

        def to_dict(self) -> dict[str, Any]:
            return {"path": self.path, "md5": self.md5}

        @classmethod
        def from_dict(cls, source_dict: dict[Any, Any]) -> DvcDatasetSource:
            return cls(source_dict["path"], source_dict["md5"])

    register_dataset_source(DvcDatasetSource)
    return DvcDatasetSource


class Tracker:
    """Logs to MLflow when enabled; every method is a no-op otherwise."""

    def __init__(self, params: Params) -> None:
        self.params = params
        self.enabled = params.tracking.enabled
        if self.enabled:
            mlflow = use(params.tracking)
            name = params.tracking.experiment
            experiment = mlflow.get_experiment_by_name(name)
            if experiment is None:
                mlflow.create_experiment(
                    name,
                    artifact_location=params.tracking.artifacts or None,
                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
                )
            elif EXPERIMENT_KIND_TAG not in experiment.tags:  # a kind chosen in the UI stays
                mlflow.MlflowClient().set_experiment_tag(
                    experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND
                )
            mlflow.set_experiment(name)
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
        for name, path in inputs.items():
            tags[f"dvc_md5.{name}"] = dvc_md5(path)
            tags[f"input.{name}"] = str(path)
        return tags

    def log_datasets(self, inputs: dict[str, Path]) -> None:
        """Each split the active run reads, as an MLflow dataset input named after the split,
        with its DVC path and md5 as the source and the md5 as the digest (the runs table's
        Dataset column), in the context SPLIT_CONTEXTS gives it."""
        if not self.enabled:
            return
        from mlflow.data.meta_dataset import MetaDataset

        source = dvc_source_class()
        for name, path in inputs.items():
            md5 = dvc_md5(path)
            dataset = MetaDataset(source(str(path), md5), name=name, digest=md5)
            self.mlflow.log_input(dataset, context=SPLIT_CONTEXTS.get(name, name))

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

    def log_refiner(
        self, model: Any, tokenizer: Any, saved_at: Path, name: str = "refiner"
    ) -> str | None:
        """A refiner as an MLflow transformers model in the active run; returns its model URI.

        `saved_at` is the local folder it was saved to: MLflow looks the model's name up on the
        hub for a model card and licence, and a local path keeps that from calling out."""
        if not self.enabled:
            return None
        from importlib.metadata import version

        # Explicit requirements: MLflow's inference imports torchvision, which is not installed.
        requirements = [f"{pkg}=={version(pkg)}" for pkg in ("torch", "transformers")]
        original = model.name_or_path
        model.name_or_path = str(Path(saved_at).resolve())
        try:
            info = self.mlflow.transformers.log_model(
                {"model": model, "tokenizer": tokenizer},
                name=name,
                task="text-generation",
                pip_requirements=requirements,
            )
        finally:
            model.name_or_path = original
        return info.model_uri

    def register(self, model_uri: str, name: str, tags: dict[str, Any]) -> str | None:
        """A new registry version of `model_uri` with the alias 'challenger'; its version."""
        if not self.enabled:
            return None
        version = self.mlflow.register_model(
            model_uri, name, tags={k: str(v) for k, v in tags.items()}
        )
        client = self.mlflow.MlflowClient()
        client.set_registered_model_alias(name, "challenger", version.version)
        return str(version.version)


RUN_ID = re.compile(r"[0-9a-f]{32}")
"""MLflow's run ids: 32 hex digits."""


def _latest_named(client: Any, experiment: str, name: str) -> str:
    """The id of the latest run called `name` in `experiment`."""
    from recast.errors import RecastError

    found = client.get_experiment_by_name(experiment)
    runs = found and client.search_runs(
        [found.experiment_id],
        filter_string=f"attributes.run_name = '{name}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise RecastError(
            f"no run id, registry version or run named {name!r} in experiment {experiment!r}"
        )
    return runs[0].info.run_id


def trace(tp: TrackingParams, target: str) -> dict[str, Any]:
    """Where a result came from: a run id, a run name (its latest run, e.g. `evaluate`), or a
    registry version (`models:/NAME@ALIAS`, `models:/NAME/VERSION`) -> its run, the parents up
    to the training run, its lineage tags (git commit, params hash, DVC md5 of each input,
    checked against the file as it is now), metrics, artifacts and child runs."""
    from mlflow.exceptions import MlflowException

    from recast.errors import RecastError

    client = use(tp).MlflowClient()
    out: dict[str, Any] = {"tracking_uri": tp.uri}
    try:
        if target.startswith("models:/"):
            name, _, alias = target.removeprefix("models:/").partition("@")
            if alias:
                version = client.get_model_version_by_alias(name, alias)
            else:
                name, _, number = name.partition("/")
                version = client.get_model_version(name, number)
            out["model_version"] = {
                "name": name,
                "version": str(version.version),
                "aliases": list(version.aliases),
                "tags": dict(version.tags),
            }
            target = version.run_id
        elif not RUN_ID.fullmatch(target):  # a name: the stages log under their own names
            target = _latest_named(client, tp.experiment, target)
        run = client.get_run(target)
    except MlflowException as e:
        raise RecastError(f"cannot trace {target!r} at {tp.uri}: {e.message}") from e
    chain = []
    parent_id = run.data.tags.get("mlflow.parentRunId")
    while parent_id:
        parent = client.get_run(parent_id)
        chain.append({"name": parent.info.run_name, "id": parent_id})
        parent_id = parent.data.tags.get("mlflow.parentRunId")
    lineage_run = client.get_run(chain[-1]["id"]) if chain else run
    tags = lineage_run.data.tags
    inputs = {}
    for key, md5 in tags.items():
        if key.startswith("dvc_md5."):
            name = key.removeprefix("dvc_md5.")
            path = Path(tags.get(f"input.{name}", ""))
            now = dvc_md5(path) if path.is_file() else None
            state = "missing" if now is None else ("unchanged" if now == md5 else "changed")
            inputs[name] = {"path": str(path), "md5": md5, "now": state}
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    out.update(
        {
            "run": {"name": run.info.run_name, "id": run.info.run_id, "status": run.info.status},
            "parents": chain,
            "git_commit": tags.get("git_commit"),
            "params_hash": tags.get("params_hash"),
            "inputs": inputs,
            "metrics": dict(run.data.metrics),
            "artifacts": [a.path for a in client.list_artifacts(run.info.run_id)],
            "children": [{"name": c.info.run_name, "id": c.info.run_id} for c in children],
        }
    )
    if tp.uri.startswith("http"):
        base = tp.uri.rstrip("/")
        out["url"] = f"{base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    return out
