"""The judge's speed levers change no verdict: the shared question prefix gives the full pass's
log-odds, and the reward model trained on frozen features still beats chance on real pairs."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SAMPLES

from recast.evaluation.agreement import read_labelled_pairs
from recast.evaluation.judge import PointwiseJudge

BPO = SAMPLES / "eval-samples" / "bpo_test.json"


@pytest.mark.slow
def test_shared_prefix_log_odds_equal_the_full_pass(smollm2: str) -> None:
    """The header runs once (and is kept for the next call), every prompt's rest on its cache
    in batches across questions: the same log-odds as running every whole prompt, on real
    BPO-test pairs."""
    from recast.config import GeneratorParams
    from recast.generator.local import LocalGenerator, chat_ids

    generator = LocalGenerator(GeneratorParams(model=smollm2, batch_size=4))
    pairs = read_labelled_pairs(BPO, limit=4)
    questions = [p.prompt for p in pairs] * 2
    answers = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    full = PointwiseJudge(generator, share_prefix=False).log_odds(questions, answers)
    shared = PointwiseJudge(generator).log_odds(questions, answers)
    assert np.allclose(shared, full, atol=1e-4)
    assert len(set(np.round(full, 4))) == len(full)  # the answers are told apart
    # one cache entry: the header, the same tokens every prompt begins with
    (header,) = generator._kv_cache
    prompt = PointwiseJudge(generator).prompt(questions[0], answers[0])
    assert list(header) == chat_ids(generator.tokenizer, prompt)[: len(header)]

    # a later call (another system's answers) reuses the cached header
    later = PointwiseJudge(generator, max_answer_words=30)
    cut = later.log_odds(questions[:4], answers[:4])
    assert list(generator._kv_cache) == [header]
    reference = PointwiseJudge(generator, max_answer_words=30, share_prefix=False)
    assert np.allclose(cut, reference.log_odds(questions[:4], answers[:4]), atol=1e-4)


def test_the_prefix_is_shared_by_default_on_a_cpu_only() -> None:
    """The default follows the device: the shared header saves compute on a CPU, and on an H100
    whole prompts batched were faster (reports/gpu_check); an explicit choice still stands."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from recast.config import GeneratorParams
    from recast.generator.local import LocalGenerator

    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1,
    )  # fmt: skip
    params = GeneratorParams(model="random")
    on_cpu = LocalGenerator(params, model=LlamaForCausalLM(config), tokenizer=object())
    with torch.device("meta"):  # a device that is not the CPU, as a GPU is
        elsewhere = LocalGenerator(params, model=LlamaForCausalLM(config), tokenizer=object())
    assert on_cpu.shares_prefixes and not elsewhere.shares_prefixes
    assert PointwiseJudge(on_cpu).share_prefix is True
    assert PointwiseJudge(elsewhere).share_prefix is False
    assert PointwiseJudge(elsewhere, share_prefix=True).share_prefix is True
    assert PointwiseJudge(on_cpu, share_prefix=False).share_prefix is False


@pytest.mark.slow
def test_head_only_reward_model_beats_chance_on_held_out_pairs(minilm: str) -> None:
    """The frozen-encoder reward model (features computed once, the head fitted on them) ranks
    held-out real Alpaca-GPT4 pairs better than a coin, and saves and scores like the
    fine-tuned one: `score` gives the rewards the head was trained on."""
    import torch

    from recast.data import alpaca_gpt4
    from recast.data.raw import read_records
    from recast.evaluation.reward import RewardModel, pairwise_accuracy, train_head
    from recast.records import PreferencePair

    path = SAMPLES / "alpaca-gpt4" / "comparison_gpt4_data_en.json"
    pairs = [p for p in alpaca_gpt4.to_pairs(read_records(path)) if isinstance(p, PreferencePair)]
    train, held_out = pairs[:64], pairs[64:104]
    assert len(held_out) == 40
    model = RewardModel.from_encoder(minilm, max_length=96)
    encoder = [p.detach().clone() for p in model.encoder.parameters()]
    losses = train_head(model, train, epochs=30, lr=1e-3, batch_size=16)
    assert len(losses) == 30 * 4 and np.mean(losses[-4:]) < np.mean(losses[:4])
    assert all(torch.equal(a, b) for a, b in zip(encoder, model.encoder.parameters(), strict=True))
    assert pairwise_accuracy(model, held_out) > 0.6
