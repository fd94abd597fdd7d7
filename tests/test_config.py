from pathlib import Path

import pytest

from recast.config import load_params
from recast.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_repo_params_file_loads_and_matches_defaults_where_unset() -> None:
    params = load_params(ROOT / "params.yaml")
    assert params.split.es_size == 32  # CPU-sized; the paper's 256 is SplitParams' default
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
