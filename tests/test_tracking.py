"""What a newcomer sees in MLflow's UI, checked against a local SQLite store: the experiment is
marked as model training, and each split a run read is a dataset input with its DVC path and md5."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_search import real_pairs

from recast import io
from recast.config import Params, load_params
from recast.records import pairs_table
from recast.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, Tracker, dvc_md5


@pytest.fixture
def params(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Params:
    monkeypatch.chdir(tmp_path)  # split paths relative to the repo, as DVC writes them
    return load_params(
        None,
        [
            f"tracking.uri=sqlite:///{tmp_path / 'mlruns.db'}",
            f"tracking.artifacts={tmp_path / 'artifacts'}",
        ],
    )


def _splits() -> dict[str, Path]:
    """Real HH-RLHF pairs from the bundled samples, cut into three split files."""
    pairs = real_pairs(9)
    paths = {}
    for name, part in (("train", pairs[:5]), ("es", pairs[:2]), ("dev", pairs[5:])):
        paths[name] = Path("data/splits") / f"{name}.parquet"
        io.write_parquet(paths[name], pairs_table(part))
    return paths


def test_new_experiment_is_marked_as_model_training(params: Params) -> None:
    tracker = Tracker(params)
    experiment = tracker.mlflow.get_experiment_by_name(params.tracking.experiment)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == "custom_model_development"


def test_older_experiment_gets_the_kind_but_a_chosen_one_stays(params: Params) -> None:
    import mlflow

    mlflow.set_tracking_uri(params.tracking.uri)
    old = mlflow.create_experiment(params.tracking.experiment)  # as before this tag existed
    chosen = mlflow.create_experiment("chosen", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    Tracker(params)
    Tracker(
        load_params(None, [f"tracking.uri={params.tracking.uri}", "tracking.experiment=chosen"])
    )
    client = mlflow.MlflowClient()
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    assert client.get_experiment(chosen).tags[EXPERIMENT_KIND_TAG] == "genai_development"


def test_each_split_is_a_dataset_input_with_its_dvc_path_and_md5(params: Params) -> None:
    import mlflow

    inputs = _splits()
    tracker = Tracker(params)
    with tracker.run("train ours seed=0", tags=tracker.lineage_tags(inputs)) as run_id:
        tracker.log_datasets(inputs)
    run = mlflow.MlflowClient().get_run(run_id)
    logged = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(logged) == {"train", "es", "dev"}
    for name, path in inputs.items():
        entry = logged[name]
        md5 = dvc_md5(path)
        assert entry.dataset.digest == md5 == run.data.tags[f"dvc_md5.{name}"]
        assert entry.dataset.source_type == "dvc"
        assert json.loads(entry.dataset.source) == {
            "path": f"data/splits/{name}.parquet",
            "md5": md5,
        }
        context = {t.key: t.value for t in entry.tags}["mlflow.data.context"]
        assert context == {"train": "training", "es": "search", "dev": "validation"}[name]
        # read back through MLflow's own API: the source checks the file is that version
        assert mlflow.data.get_source(entry).load() == str(path)
    io.write_parquet(inputs["dev"], pairs_table(real_pairs(2)))  # the file moved on
    with pytest.raises(FileNotFoundError, match="dvc checkout"):
        mlflow.data.get_source(logged["dev"]).load()


def test_disabled_tracking_logs_nothing(params: Params, tmp_path: Path) -> None:
    off = load_params(None, ["tracking.enabled=false", f"tracking.uri={params.tracking.uri}"])
    Tracker(off).log_datasets(_splits())
    assert not (tmp_path / "mlruns.db").exists()
