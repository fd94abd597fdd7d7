from pathlib import Path

import pytest

from recast.config import load_params
from recast.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_repo_params_file_loads_and_matches_defaults_where_unset() -> None:
    params = load_params(ROOT / "params.yaml")
    assert params.split.es_size == 16  # CPU-sized (make run); the paper's 256 is the default
    assert load_params(None).split.es_size == 256
    assert params.ingest.root == "src/recast/data/samples"


def test_overrides_are_parsed_as_yaml() -> None:
    params = load_params(
        None,
        [
            "split.es_size=64",
            "generator.endpoints=[http://a/v1, http://b/v1]",
            "ingest.max_records=null",
            "split.dev_fraction=0.2",
        ],
    )
    assert params.split.es_size == 64
    assert params.generator.endpoints == ["http://a/v1", "http://b/v1"]
    assert params.ingest.max_records is None
    assert params.split.dev_fraction == 0.2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("split.es_sise=3", "unknown params key 'split.es_sise'"),
        ("splitt.es_size=3", "unknown params section 'splitt'"),
        ("split.es_size=many", "split.es_size: expected int"),
        ("split.es_size", "expects section.key=value"),
        ("es_size=3", "must be section.key"),
        ("pairs.languages=en", "pairs.languages: expected a list"),
    ],
)
def test_bad_overrides_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_params(None, [override])


def test_unknown_key_in_file(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("split:\n  seed: 1\n  bogus: 2\n")
    with pytest.raises(ConfigError, match="unknown params key 'split.bogus'"):
        load_params(path)


def test_missing_explicit_params_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("split.es_size=-5", "split.es_size=-5 is out of range: it must be ≥ 1"),
        ("split.es_size=0", "split.es_size=0 is out of range: it must be ≥ 1"),
        ("split.dev_fraction=1", "split.dev_fraction=1.0 is out of range: it must be in (0, 1)"),
        ("split.dev_fraction=0", "split.dev_fraction=0.0 is out of range: it must be in (0, 1)"),
        ("sampling.top_p=0", "sampling.top_p=0.0 is out of range: it must be in (0, 1]"),
        ("refiner.lr=0", "refiner.lr=0.0 is out of range: it must be > 0"),
        ("refiner.lr=-0.001", "refiner.lr=-0.001 is out of range: it must be > 0"),
        ("cmaes.popsize=1", "cmaes.popsize=1 is out of range: it must be ≥ 2"),
        ("cmaes.popsize=magic", "cmaes.popsize='magic' is not allowed: it must be 'paper' or"),
        ("prompter.lambdas=[0.1, -1]", "prompter.lambdas[1]=-1.0 is out of range"),
        ("evaluate.judge_tie_margin=2", "evaluate.judge_tie_margin=2.0 is out of range"),
    ],
)
def test_out_of_range_values_name_key_value_and_range(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_params(ROOT / "params.yaml", [override])
    assert message in str(error.value)


def test_out_of_range_value_in_the_file_is_caught_on_load(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("refiner:\n  batch_size: 0\n")
    with pytest.raises(ConfigError, match=r"refiner\.batch_size=0 is out of range"):
        load_params(path)


def test_edges_of_the_ranges_and_null_are_allowed() -> None:
    params = load_params(
        None,
        [
            "split.es_size=1",
            "sampling.top_p=1",
            "sampling.temperature=0",
            "refiner.omega=0",
            "refiner.train_size=null",
            "evaluate.judge_tie_margin=0",
        ],
    )
    assert (params.split.es_size, params.sampling.top_p, params.refiner.train_size) == (1, 1, None)


@pytest.mark.parametrize(
    ("value", "expected"), [("4", 4), ("'12'", 12), ("paper", "paper"), ("pycma", "pycma")]
)
def test_popsize_takes_an_integer_or_a_rule(value: str, expected: int | str) -> None:
    assert load_params(None, [f"cmaes.popsize={value}"]).cmaes.popsize == expected


def test_every_ranged_key_exists() -> None:
    from recast.config import RANGES

    params = load_params(None).to_dict()
    assert [k for k in RANGES if k.split(".")[1] not in params[k.split(".")[0]]] == []


def test_a_missing_params_yaml_is_an_error_not_the_defaults(in_tmp: Path) -> None:
    """From a folder without params.yaml, every command stops and says where it looked,
    instead of running the paper-scale defaults."""
    from typer.testing import CliRunner

    from recast.cli import app

    (in_tmp / "params.yaml").unlink()
    with pytest.raises(ConfigError, match="params file not found: params.yaml in "):
        load_params("params.yaml")
    result = CliRunner().invoke(app, ["data", "summary"])
    assert result.exit_code == 1 and "params file not found" in result.output


@pytest.mark.parametrize("value", ["many", "1.5", "[4]"])
def test_popsize_rejects_what_is_neither_an_integer_nor_a_rule(value: str) -> None:
    with pytest.raises(ConfigError, match="cmaes.popsize"):
        load_params(None, [f"cmaes.popsize={value}"])
