"""Fine-tuning (Eq. 12) and Algorithm 1's rounds, on a tiny random LM for speed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_search import real_pairs

from recast import io
from recast.config import load_params
from recast.generator.local import LocalGenerator
from recast.records import pairs_table
from recast.refiner.model import Refiner
from recast.search import STATE
from recast.stages.refiner import register_challenger
from recast.training import Reporter, finetune, pseudo_labels, train


def tiny_params(tiny_lm: str, tmp_path: Path, *extra: str):
    return load_params(
        None,
        [
            f"refiner.model={tiny_lm}",
            f"generator.model={tiny_lm}",
            "refiner.rounds=2",
            "refiner.epochs=1",
            "refiner.batch_size=2",
            "refiner.max_refined_tokens=6",
            "cmaes.iterations=2",
            "cmaes.delta_sigma=0.3",
            "cmaes.max_target_tokens=16",
            "cmaes.stop_on_flat_fitness=false",
            f"refiner.out_dir={tmp_path / 'train'}",
            f"cmaes.out_dir={tmp_path / 'search'}",
            "tracking.enabled=false",
            *extra,
        ],
    )


def test_finetune_fits_the_pseudo_labels(tiny_lm: str, tmp_path: Path) -> None:
    p = tiny_params(tiny_lm, tmp_path, "refiner.lr=0.003", "refiner.epochs=15")
    refiner = Refiner.load(tiny_lm)
    target = Refiner.load(tiny_lm)
    pairs = real_pairs(4)
    x_star = [r.x_prime for r in pseudo_labels(refiner, pairs, refiner.base_embeddings(), 6)]
    stats = finetune(refiner, target, pairs, x_star, p.refiner)
    assert len(stats) == 15 * 2
    assert stats[-1].ce < stats[0].ce / 2
    assert all(s.kl >= 0 for s in stats) and stats[0].kl > 0
    assert stats[0].loss == pytest.approx(stats[0].ce + 0.02 * stats[0].kl, rel=1e-5)
    assert not any(p.requires_grad for p in refiner.model.parameters())


def test_omega_zero_drops_the_kl_term(tiny_lm: str, tmp_path: Path) -> None:
    p = tiny_params(tiny_lm, tmp_path, "refiner.omega=0")
    refiner, target = Refiner.load(tiny_lm), Refiner.load(tiny_lm)
    pairs = real_pairs(2)
    x_star = [r.x_prime for r in pseudo_labels(refiner, pairs, refiner.base_embeddings(), 6)]
    stats = finetune(refiner, target, pairs, x_star, p.refiner)
    assert all(s.kl == 0 and s.loss == s.ce for s in stats)


def test_lora_finetuning_merges_into_the_refiner(tiny_lm: str, tmp_path: Path) -> None:
    p = tiny_params(tiny_lm, tmp_path, "refiner.lora=true", "refiner.lr=0.01")
    refiner, target = Refiner.load(tiny_lm), Refiner.load(tiny_lm)
    before = {k: v.clone() for k, v in refiner.model.state_dict().items()}
    pairs = real_pairs(2)
    x_star = [r.x_prime for r in pseudo_labels(refiner, pairs, refiner.base_embeddings(), 6)]
    finetune(refiner, target, pairs, x_star, p.refiner)
    after = refiner.model.state_dict()
    assert set(after) == set(before)  # merged back: a plain model again, no adapter keys
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_rounds_write_their_outputs_and_resume(tiny_lm: str, tmp_path: Path) -> None:
    # the paper's rule: the tiny random LM writes no x* the check keeps, so a guarded round
    # would fine-tune on nothing (the guarded set: test_guarded_rounds_fine_tune_only_…)
    p = tiny_params(tiny_lm, tmp_path, "refiner.train_size=4", "refiner.guard=false")
    pairs = real_pairs(10)
    train_pairs, es, dev = pairs[:6], pairs[6:8], pairs[8:]
    iterations: list[tuple[int, int]] = []
    report = Reporter(iteration=lambda r, row: iterations.append((r, row["iteration"])))
    gen = LocalGenerator(p.generator)
    summary = train(p, Refiner.load(tiny_lm), gen, train_pairs, es, dev, report).summary
    assert iterations == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    for s in (1, 2):
        folder = tmp_path / "train" / f"round-{s}"
        assert np.load(folder / "xi_star.npy").shape == (32,)
        assert io.read_parquet(folder / "pseudo_labels.parquet").num_rows == 4
        assert (folder / "refiner" / "config.json").exists()
        row = io.read_json(folder / "round.json")
        assert {
            "fitness_at_zero",
            "best_fitness",
            "dev_fitness_at_zero",
            "dev_fitness_at_xi_star",
        } <= set(row)
    assert (tmp_path / "search" / "result.json").exists()  # round 1 = the `search` stage
    assert (tmp_path / "train" / "round-2" / "search" / "result.json").exists()
    # the round-2 refiner is the fine-tuned one, not the base
    base = Refiner.load(tiny_lm).model.state_dict()
    tuned = Refiner.load(str(tmp_path / "train" / "round-2" / "refiner")).model.state_dict()
    assert any(not torch.equal(base[k], tuned[k]) for k in base)

    iterations.clear()
    again = train(p, Refiner.load(tiny_lm), gen, train_pairs, es, dev, report).summary
    assert iterations == []  # both rounds were done: nothing is recomputed
    assert again["rounds"] == summary["rounds"]


def test_without_cmaes_ablation(tiny_lm: str, tmp_path: Path) -> None:
    p = tiny_params(
        tiny_lm, tmp_path, "cmaes.enabled=false", "refiner.rounds=1", "refiner.train_size=2"
    )
    pairs = real_pairs(4)
    summary = train(
        p, Refiner.load(tiny_lm), LocalGenerator(p.generator), pairs[:2], pairs[2:3], pairs[3:]
    ).summary
    assert "best_fitness" not in summary["rounds"][0]
    assert not (tmp_path / "search").exists()
    assert (tmp_path / "train" / "round-1" / "refiner" / "config.json").exists()


def test_mlflow_records_rounds_searches_and_xi_star(tiny_lm: str, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from recast.tracking import dvc_md5

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    p = tiny_params(
        tiny_lm,
        tmp_path,
        "tracking.enabled=true",
        f"tracking.uri={uri}",
        f"tracking.artifacts={tmp_path / 'artifacts'}",
        "refiner.train_size=2",
    )
    pairs = real_pairs(8)
    split = tmp_path / "train.parquet"
    io.write_parquet(split, pairs_table(pairs[:4]))
    trained = train(
        p,
        Refiner.load(tiny_lm),
        LocalGenerator(p.generator),
        pairs[:4],
        pairs[4:6],
        pairs[6:],
        inputs={"train": split},
    )
    registered = register_challenger(p, trained)  # what the `train` stage does with it
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("recast")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    parent_name = "train ours seed=0"  # system and seed, for the MLflow UI's comparisons
    assert set(runs) == {parent_name, "round-1", "round-2", "search round-1", "search round-2"}
    parent = runs[parent_name]
    assert parent.data.tags["system"] == "ours"
    assert parent.info.run_id == trained.run_id
    assert "mlflow_run_id" not in trained.summary  # a fact of this run: kept out of DVC's outputs
    assert parent.data.tags["dvc_md5.train"] == dvc_md5(split)
    # the split as an MLflow dataset input too: the runs table's Dataset column
    assert [(d.dataset.name, d.dataset.digest) for d in parent.inputs.dataset_inputs] == [
        ("train", dvc_md5(split))
    ]
    assert {"git_commit", "params_hash"} <= set(parent.data.tags)
    assert parent.data.params["cmaes.d_z"] == "16"
    for s in (1, 2):
        round_run, search_run = runs[f"round-{s}"], runs[f"search round-{s}"]
        assert round_run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert search_run.data.tags["mlflow.parentRunId"] == round_run.info.run_id
        curve = client.get_metric_history(search_run.info.run_id, "fitness_best")
        assert [m.step for m in curve] == [1, 2]
        assert "best_fitness" in round_run.data.metrics
        artifacts = [a.path for a in client.list_artifacts(search_run.info.run_id, "xi_star")]
        assert artifacts == ["xi_star/xi_star.npy"]
        kept = {a.path for a in client.list_artifacts(round_run.info.run_id)}
        assert "pseudo_labels.parquet" in kept
        models = client.search_logged_models(
            [exp.experiment_id], filter_string=f"source_run_id = '{round_run.info.run_id}'"
        )
        assert [m.name for m in models] == ["refiner"]  # the round's checkpoint, as a model
    # the last round's refiner is the registry's challenger, traceable to its training run
    version = client.get_model_version_by_alias("recast-refiner", "challenger")
    assert str(version.version) == registered["registered_version"] == "1"
    assert version.tags["train_run_id"] == parent.info.run_id
    assert version.run_id == runs["round-2"].info.run_id


def test_dev_fitness_is_read_back_only_for_the_same_xi_and_dev(
    tiny_lm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recast.training as training
    from recast.search import make_space

    p = tiny_params(tiny_lm, tmp_path)
    pairs = real_pairs(5)
    refiner, gen = Refiner.load(tiny_lm), LocalGenerator(p.generator)
    space = make_space(refiner, pairs[:2], p.cmaes)
    xi = np.full(2 * p.cmaes.d_z, 0.1)
    first = training.dev_fitness_cached(refiner, gen, pairs[2:], space, p, xi, tmp_path)
    assert set(first) == {"dev_fitness_at_zero", "dev_fitness_at_xi_star"}
    calls: list[int] = []
    real = training.dev_fitness
    monkeypatch.setattr(training, "dev_fitness", lambda *a: calls.append(1) or real(*a))
    again = training.dev_fitness_cached(refiner, gen, pairs[2:], space, p, xi, tmp_path)
    assert again == first and calls == []  # read back, not rescored
    training.dev_fitness_cached(refiner, gen, pairs[3:], space, p, xi, tmp_path)  # other dev
    training.dev_fitness_cached(refiner, gen, pairs[2:], space, p, 2 * xi, tmp_path)  # other ξ*
    assert calls == [1, 1]
    saved = io.read_json(tmp_path / training.DEV_FITNESS)
    training.dev_fitness_cached(refiner, gen, pairs[2:], space, p, 3 * xi, tmp_path, save=False)
    assert calls == [1, 1, 1]  # scored, but round 1's search folder is left alone:
    assert io.read_json(tmp_path / training.DEV_FITNESS) == saved


@pytest.mark.parametrize("guard", [True, False])
def test_guarded_rounds_fine_tune_only_on_the_x_star_the_check_keeps(
    tiny_lm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, guard: bool
) -> None:
    import recast.training as training

    p = tiny_params(
        tiny_lm, tmp_path, "refiner.rounds=1", "refiner.train_size=6", "cmaes.enabled=false",
        f"refiner.guard={str(guard).lower()}", "refiner.check_encoder=null",
    )  # fmt: skip
    seen: list[tuple[list[str], list[str]]] = []
    real = training.finetune

    def spy(refiner, q_im, pairs, x_star, rp, on_step=lambda _: None):  # type: ignore[no-untyped-def]
        seen.append(([q.id for q in pairs], list(x_star)))
        return real(refiner, q_im, pairs, x_star, rp, on_step)

    monkeypatch.setattr(training, "finetune", spy)
    pairs = real_pairs(8)
    gen = LocalGenerator(p.generator)
    summary = train(p, Refiner.load(tiny_lm), gen, pairs[:6], [], pairs[6:]).summary
    labels = io.read_parquet(tmp_path / "train" / "round-1" / "pseudo_labels.parquet").to_pylist()
    harmful = {"answers", "drift", "degenerate"}
    kept = [r for r in labels if not (guard and (r["verdict"] in harmful or not r["x_star"]))]
    assert seen == [([r["id"] for r in kept], [r["x_star"] for r in kept])]
    assert summary["rounds"][0]["x_star_trained_on"] == len(kept)
    if not guard:
        assert len(kept) == 6  # the paper: every x* as decoded


def test_the_same_inputs_write_the_same_bytes(tiny_lm: str, tmp_path: Path) -> None:
    """What DVC hashes (round.json, the search's result.json, ξ*, x*, checkpoints) holds no
    clock reading and no run id: two runs on the same inputs write the same bytes, and a
    finished search leaves no checkpoint behind (pycma pickles its own timers into it)."""
    pairs = real_pairs(10)
    written = []
    for run in ("a", "b"):
        out = tmp_path / run
        p = tiny_params(tiny_lm, out, "refiner.train_size=4", "refiner.guard=false")
        gen = LocalGenerator(p.generator)
        train(p, Refiner.load(tiny_lm), gen, pairs[:6], pairs[6:8], pairs[8:])
        written.append(
            {str(f.relative_to(out)): f.read_bytes() for f in out.rglob("*") if f.is_file()}
        )
    assert "search/result.json" in written[0] and "train/round-2/round.json" in written[0]
    assert not [name for name in written[0] if name.endswith(STATE)]
    assert sorted(written[0]) == sorted(written[1])
    assert [name for name in written[0] if written[0][name] != written[1][name]] == []


def test_the_summary_config_digests_only_what_training_reads() -> None:
    """summary.json's `config` moves with refiner / cmaes / generator, not with evaluate.*: a
    clone that retrains an up-to-date `train` then writes the summary the lock records. The
    sections are the `train` stage's declared params."""
    from recast.training import TRAINED_BY, config_hash

    stages = yaml.safe_load((Path(__file__).parents[1] / "dvc.yaml").read_text())["stages"]
    assert tuple(stages["train"]["params"]) == TRAINED_BY
    base = load_params(None)
    assert config_hash(load_params(None, ["evaluate.agreement_pairs=3"])) == config_hash(base)
    assert config_hash(load_params(None, ["refiner.lr=0.001"])) != config_hash(base)
    assert config_hash(load_params(None, ["cmaes.d_z=8"])) != config_hash(base)
