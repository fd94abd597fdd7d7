"""The `recast` command line, run the way a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from conftest import ROOT, SAMPLES
from typer.testing import CliRunner

from recast.cli import app

runner = CliRunner()
BIN = Path(sys.executable).parent


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_data_build_prints_the_summary(in_tmp: Path, smollm2_tokenizer: str) -> None:
    code, output = run("data", "build", "--set", f"ingest.root={SAMPLES}")
    assert code == 0, output
    assert "Preference pairs per source" in output and "D_es (CMA-ES subset of D)" in output
    split = json.loads((in_tmp / "metrics" / "split.json").read_text())
    assert split["sizes"]["es"] == 256 and "256" in output


def test_unknown_key_is_a_clear_error(in_tmp: Path) -> None:
    code, output = run("data", "build", "--set", "split.es_sise=3")
    assert code == 1
    assert "unknown params key 'split.es_sise'" in output
    assert "Traceback" not in output


def test_params_file_option(in_tmp: Path) -> None:
    code, output = run("data", "ingest", "--params", str(in_tmp / "missing.yaml"))
    assert code == 1 and "params file not found" in output


def test_validate_failure_names_expectation(in_tmp: Path, smollm2_tokenizer: str) -> None:
    assert run("data", "ingest", "--set", f"ingest.root={SAMPLES}")[0] == 0
    assert run("data", "pairs")[0] == 0
    from recast import io

    table = io.read_parquet("data/pairs/pairs.parquet")
    # two duplicated rows: the ids are no longer unique
    io.write_parquet("data/pairs/pairs.parquet", pa.concat_tables([table, table.slice(0, 2)]))
    code, output = run("data", "validate")
    assert code == 1
    assert "expect_column_values_to_be_unique(id)" in output
    assert (in_tmp / "reports" / "validation" / "data_docs" / "index.html").exists()
    code, output = run("data", "split")
    assert code == 1 and "has not passed validation" in output


def test_generate_prints_an_answer(in_tmp: Path, smollm2: str) -> None:
    code, output = run(
        "generate", "Name three primary colors.", "--set", "sampling.max_new_tokens=12"
    )
    assert code == 0, output
    assert output.strip()


def test_generate_prints_the_answer_as_written(
    in_tmp: Path, smollm2: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not folded at the console's width: a copied answer must be the model's text."""
    import recast.generator
    from recast import cli

    answers: list[str] = []
    make_generator = recast.generator.make_generator

    def recording(*args: Any, **kwargs: Any) -> Any:  # the real generator, its answers kept
        generator = make_generator(*args, **kwargs)
        generate = generator.generate

        def generate_and_keep(*a: Any, **k: Any) -> list[str]:
            batch = generate(*a, **k)
            answers.extend(batch)
            return batch

        generator.generate = generate_and_keep
        return generator

    monkeypatch.setattr(recast.generator, "make_generator", recording)
    width = 40
    monkeypatch.setattr(cli.out, "width", width)
    query = json.loads((SAMPLES / "eval-samples" / "dolly_eval.json").read_text())[0]
    args = ["generate", query["instruction"], "--set", "sampling.max_new_tokens=24"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in answers[0].splitlines()) > width  # else nothing to fold
    assert result.stdout == answers[0] + "\n"


def test_out_of_range_param_fails_before_any_stage(in_tmp: Path) -> None:
    code, output = run("data", "build", "--set", "split.es_size=-5")
    assert code == 1
    assert "split.es_size=-5 is out of range: it must be ≥ 1" in output
    assert not (in_tmp / "data").exists() and not (in_tmp / "metrics").exists()


def test_generate_rejects_empty_query(in_tmp: Path) -> None:
    code, output = run("generate", "   ")
    assert code == 1 and "the query is empty" in output


def test_models_list(in_tmp: Path, smollm2_tokenizer: str) -> None:
    code, output = run("models", "list")
    assert code == 0 and "smollm2-135m-instruct" in output and "minilm-l6" in output


@pytest.mark.parametrize(
    "command",
    [
        ["data", "build"],
        ["data", "ingest"],
        ["data", "pairs"],
        ["data", "validate"],
        ["data", "split"],
        ["data", "summary"],
        ["models", "fetch"],
        ["models", "list"],
        ["generate"],
        ["rewrites"],
        ["warmstart"],
        ["search"],
        ["train"],
        ["refine"],
        ["promote"],
        ["trace"],
    ],
)
def test_help_explains_every_option(command: list[str]) -> None:
    code, output = run(*command, "--help")
    assert code == 0
    assert "--params" in output and "--set" in output and "section.key=value" in output


def test_dvc_repro_twice_is_a_noop(tmp_path: Path, smollm2_tokenizer: str) -> None:
    """The data pipeline on a fresh copy of the repo: the second `dvc repro split` does nothing.
    (The search / train stages after it take minutes; `make run` runs them.)"""
    repo = tmp_path / "repo"
    for name in ("src", "params.yaml", "dvc.yaml", "data.dvc", ".dvc/config", ".dvc/.gitignore"):
        src = ROOT / name
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, repo / name)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    first = subprocess.run(
        [str(BIN / "dvc"), "repro", "split"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert (repo / "data" / "splits" / "es.parquet").exists()
    second = subprocess.run(
        [str(BIN / "dvc"), "repro", "split"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert second.returncode == 0
    for stage in ("ingest", "pairs", "validate", "split"):
        assert f"Stage '{stage}' didn't change, skipping" in second.stdout
    assert "Running stage" not in second.stdout


def test_refine_prints_the_refined_query(in_tmp: Path, tiny_lm: str) -> None:
    from recast.refiner.model import Refiner
    from recast.training import save_refiner

    save_refiner(Refiner.load(tiny_lm), in_tmp / "ckpt")
    code, output = run(
        "refine",
        "How can I improve my time management skills?",
        "--checkpoint",
        str(in_tmp / "ckpt"),
        "--set",
        "refiner.max_refined_tokens=6",
    )
    assert code == 0, output
    assert output.strip()


def test_refine_without_a_trained_refiner_says_what_to_run(in_tmp: Path) -> None:
    code, output = run("refine", "How can I improve my time management skills?")
    assert code == 1
    assert "models:/recast-refiner@champion" in output and "train and promote" in output
