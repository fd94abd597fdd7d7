"""The local transformers generator on the packaged SmolLM2-135M-Instruct."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from conftest import SAMPLES

from recast.config import GeneratorParams
from recast.data import eval_sets
from recast.data.raw import read_records
from recast.errors import GeneratorError
from recast.generator import Generator, Sampling, make_generator
from recast.generator.local import LocalGenerator, chat_ids


@pytest.fixture(scope="module")
def generator(smollm2: str) -> LocalGenerator:
    gen = make_generator(GeneratorParams(model=smollm2, batch_size=3, dtype="float32"))
    assert isinstance(gen, Generator)
    return gen


@pytest.fixture(scope="module")
def bpo() -> list:
    path = SAMPLES / "eval-samples" / "bpo_test.json"
    return list(eval_sets.to_prompts("bpo_test", read_records(path)))[:5]


def hand_ce(gen: LocalGenerator, prompt: str, target: str) -> float:
    """-1/|y| Σ log p(y_t | chat(x), y_<t), one unpadded sequence, log-probs summed by hand."""
    head = chat_ids(gen.tokenizer, prompt)
    tail = gen.tokenizer(target, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([head + tail])
    with torch.no_grad():
        logits = gen.model(input_ids=ids).logits[0].double()
    total = 0.0
    for t, token in enumerate(tail):
        row = logits[len(head) + t - 1]
        total += (row[token] - torch.logsumexp(row, dim=0)).item()
    return -total / len(tail)


def test_score_matches_hand_computation(generator: LocalGenerator, bpo: list) -> None:
    prompts = [p.prompt for p in bpo]
    targets = [p.reference for p in bpo]  # real good_res answers, of different lengths
    scores = generator.score(prompts, targets)  # batched, padded, reordered by length
    for prompt, target, got in zip(prompts, targets, scores, strict=True):
        assert got == pytest.approx(hand_ce(generator, prompt, target), abs=2e-4)


def test_scores_are_finite_positive_and_order_independent(
    generator: LocalGenerator, bpo: list
) -> None:
    prompts, targets = [p.prompt for p in bpo], [p.reference for p in bpo]
    scores = generator.score(prompts, targets)
    assert all(math.isfinite(s) and s > 0 for s in scores)
    backwards = generator.score(prompts[::-1], targets[::-1])[::-1]
    assert backwards == pytest.approx(scores, abs=1e-5)


def test_generate_returns_text(generator: LocalGenerator, bpo: list) -> None:
    answers = generator.generate([p.prompt for p in bpo[:3]], Sampling(max_new_tokens=24))
    assert len(answers) == 3 and all(a.strip() for a in answers)
    again = generator.generate([p.prompt for p in bpo[:3]], Sampling(max_new_tokens=24))
    assert again == answers  # greedy is deterministic


def test_sampling_with_seed_is_reproducible(generator: LocalGenerator, bpo: list) -> None:
    s = Sampling(max_new_tokens=16, temperature=1.0, top_p=0.9, top_k=20, seed=3)
    assert generator.generate([bpo[0].prompt], s) == generator.generate([bpo[0].prompt], s)


def test_prompt_over_max_length_is_an_error(
    smollm2: str, generator: LocalGenerator, bpo: list
) -> None:
    small = LocalGenerator(
        GeneratorParams(model=smollm2, max_length=16), generator.model, generator.tokenizer
    )
    with pytest.raises(GeneratorError, match=r"over generator\.max_length=16"):
        small.generate([bpo[0].prompt], Sampling(max_new_tokens=4))
    with pytest.raises(GeneratorError, match=r"over generator\.max_length=16"):
        small.score(["Hi"], [bpo[0].reference])


def test_empty_target_is_an_error(generator: LocalGenerator) -> None:
    with pytest.raises(GeneratorError, match="target 0 is empty"):
        generator.score(["What is 2+2?"], [""])


def test_weights_are_frozen(generator: LocalGenerator) -> None:
    assert not any(p.requires_grad for p in generator.model.parameters())


@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None,
    reason="vLLM is the `gpu` extra, installed only in a separate GPU environment",
)
def test_vllm_score_matches_local(smollm2: str, generator: LocalGenerator, bpo: list) -> None:
    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA device; none is visible")
    vllm_gen = make_generator(GeneratorParams(backend="vllm", model=smollm2, dtype="float32"))
    prompts, targets = [p.prompt for p in bpo], [p.reference for p in bpo]
    expected = generator.score(prompts, targets)
    assert vllm_gen.score(prompts, targets) == pytest.approx(expected, abs=2e-2)
    assert all(vllm_gen.generate(prompts, Sampling(max_new_tokens=16)))
