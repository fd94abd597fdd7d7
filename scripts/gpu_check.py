"""GPU check: recast's own code on CUDA in bf16, with random-weight models of real shapes.

What runs, all through recast's code (nothing reimplemented here):

1. the local generator (`recast.generator.local.LocalGenerator`) `score` and `generate`, for a
   Llama-3.2-1B-shaped model and a Llama-3.1-8B-shaped layer stack cut to a few layers;
2. one CMA-ES iteration of the search (`recast.search.run_search`: ∇e^b, F(0), one population)
   with a Llama-3.2-1B-shaped refiner (`recast.refiner.model.Refiner`) in front of the 1B-shaped
   generator;
3. one fine-tuning step of that refiner (`recast.training.finetune`, Eq. 12 with the KL term);
4. `recast serve`'s micro-batching: that refiner's x' for a batch of queries through
   `recast.serve.batcher.MicroBatcher` and the serve refine path, batched against one at a time;
5. the evaluation's judge (issue 11): the Bradley-Terry reward model (`recast.evaluation.reward`,
   a MiniLM-L6-shaped encoder) trained for some steps of Eq. 4 and scoring, then the pointwise
   judge (`recast.evaluation.judge.PointwiseJudge`) with a Qwen2.5-1.5B-shaped model as the
   issue filed it (two passes per answer, whole answers), as before the shared prefix (one pass,
   whole prompts), with the header and question's key/value cache shared, as `judge_from` builds
   it now (shared on a CPU only), and the default ensemble (reward model + now), each on the
   same pairs, cold and warm.

Nothing is downloaded or read from a model cache (a GPU machine may have no network and the
packaged models do not travel with the working tree): the models are built from a config with
random weights, and the inputs are random token ids. Their tokenizer is a word-level one built
here (token i is the word `t<i>`, so text and token counts match exactly), or the packaged
SmolLM2's when it is already in the local cache (`--tokenizer auto`). Random weights make the
numbers a measure of speed and memory, not of quality.

Printed per part: tokens/s, for `score` the throughput as a share of the GPU's bf16 dense peak
(datasheet figure, by device name) and of a bf16 matrix product measured here, peak GPU memory,
and wall time. FLOPs of `score` are counted as 2·(layer parameters)·(tokens) for the layers,
2·(output head)·(target tokens) for the head (`score` projects only the target positions) and
2·L²·hidden·layers per sequence for causal attention.

    python scripts/gpu_check.py                       # on a GPU: the real shapes (< 8 min)
    python scripts/gpu_check.py --device cpu --quick  # tiny shapes on the CPU (the test)

`scripts/gpu_check.sh` wraps this for a machine where recast is not installed.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import resource
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

# No hub access, ever: a GPU machine may have no network, and a silent download would also
# make the timings meaningless. Set before transformers is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# bf16 dense tensor-core peak in TFLOP/s from the datasheets (no sparsity). Order matters: the
# first substring found in torch.cuda.get_device_name wins ("H100 PCIe" before "H100").
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM ("NVIDIA H100 80GB HBM3")
    ("A100", 312.0),
)

LLAMA_1B: dict[str, Any] = {  # meta-llama/Llama-3.2-1B's config
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "tie_word_embeddings": True,
}
LLAMA_8B_LAYERS: dict[str, Any] = {  # meta-llama/Llama-3.1-8B's width; depth set by --layers-8b
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "tie_word_embeddings": False,
}
QWEN_1_5B: dict[str, Any] = {  # Qwen/Qwen2.5-Coder-1.5B-Instruct's config: the packaged judge
    "architecture": "qwen2",
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": True,
}
MINILM_L6: dict[str, Any] = {  # sentence-transformers/all-MiniLM-L6-v2's config: r_ω's encoder
    "vocab_size": 30522,
    "hidden_size": 384,
    "intermediate_size": 1536,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "max_position_embeddings": 512,
}
TINY_BERT: dict[str, Any] = {
    "vocab_size": 512,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "max_position_embeddings": 128,
}
TINY: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "tie_word_embeddings": True,
}
TINY_WIDE: dict[str, Any] = {**TINY, "hidden_size": 96, "tie_word_embeddings": False}


@dataclass(frozen=True)
class Sizes:
    """How much work each part does."""

    vocab: int
    generators: tuple[tuple[str, dict[str, Any]], ...]
    """(name, Llama config fields); the first is also the search's generator."""
    refiner: tuple[str, dict[str, Any]]
    score_samples: int
    prompt_tokens: int
    target_tokens: int
    gen_prompts: int
    gen_prompt_tokens: int
    new_tokens: int
    es_pairs: int
    query_tokens: int
    answer_tokens: int
    refined_tokens: int
    ft_pairs: int
    serve_queries: int
    """Queries refined through the micro-batcher, batched (max_batch = this) and one at a time."""
    judge: tuple[str, dict[str, Any]]
    """(name, config fields) of the pointwise judge's LLM."""
    judge_vocab: int
    judge_pairs: int
    """Questions judged, each with two answers (a pair)."""
    judge_question_words: int
    judge_answer_words: int
    judge_max_answer_words: int
    """evaluate.judge_max_answer_words: below judge_answer_words, so that the cut applies."""
    reward_encoder: dict[str, Any]
    """BertConfig fields of r_ω's encoder."""
    reward_steps: int
    reward_batch: int
    reward_max_length: int
    matmul: int


def full_sizes(layers_8b: int) -> Sizes:
    """The real shapes. On an H100 the whole run is meant to take well under 8 minutes."""
    return Sizes(
        vocab=128256,  # Llama 3's vocabulary: the output head is a large share of a 1B model
        generators=(
            ("llama-3.2-1b", LLAMA_1B),
            (
                f"llama-3.1-8b-{layers_8b}-layers",
                {**LLAMA_8B_LAYERS, "num_hidden_layers": layers_8b},
            ),
        ),
        refiner=("llama-3.2-1b", LLAMA_1B),
        score_samples=512,
        prompt_tokens=384,
        target_tokens=128,  # cmaes.max_target_tokens: y is scored on at most 128 tokens
        gen_prompts=64,
        gen_prompt_tokens=128,
        new_tokens=128,
        es_pairs=16,
        query_tokens=128,
        answer_tokens=128,
        refined_tokens=64,  # refiner.max_refined_tokens (Table 5: n_g = 64)
        ft_pairs=8,  # refiner.batch_size: one step
        serve_queries=16,  # serve.max_batch's default
        judge=("qwen2.5-1.5b", QWEN_1_5B),
        judge_vocab=151936,
        judge_pairs=64,
        judge_question_words=48,
        judge_answer_words=240,
        judge_max_answer_words=200,  # evaluate.judge_max_answer_words
        reward_encoder=MINILM_L6,
        reward_steps=100,
        reward_batch=16,  # reward.batch_size
        reward_max_length=256,  # reward.max_length
        matmul=8192,
    )


def quick_sizes() -> Sizes:
    """Tiny shapes: every code path of the full run, in seconds on a CPU."""
    return Sizes(
        vocab=2048,
        generators=(("tiny", TINY), ("tiny-wide", TINY_WIDE)),
        refiner=("tiny", TINY),
        score_samples=8,
        prompt_tokens=24,
        target_tokens=8,
        gen_prompts=4,
        gen_prompt_tokens=16,
        new_tokens=8,
        es_pairs=3,
        query_tokens=12,
        answer_tokens=8,
        refined_tokens=6,
        ft_pairs=2,
        serve_queries=4,
        judge=("tiny-qwen2", {**TINY, "architecture": "qwen2"}),
        judge_vocab=2048,
        judge_pairs=3,
        judge_question_words=8,
        judge_answer_words=16,
        judge_max_answer_words=12,
        reward_encoder=TINY_BERT,
        reward_steps=3,
        reward_batch=2,
        reward_max_length=32,
        matmul=256,
    )


# -- environment ------------------------------------------------------------------------------


def check_imports() -> None:
    """Name every missing package at once instead of failing at the first import."""
    import importlib.util

    needed = ["numpy", "torch", "transformers", "tokenizers", "pyarrow", "yaml", "cma", "recast"]
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        sys.exit(
            f"gpu_check: missing Python packages: {', '.join(missing)}. Run it through "
            "scripts/gpu_check.sh (it puts src/ on the path); `scripts/gpu_check.sh prepare` "
            "saves the wheel of cma, the one recast needs that GPU images usually lack, in .whl/"
        )


def pick_device(requested: str) -> str:
    """'cuda' unless --device cpu; no silent CPU fallback: a GPU check that ran on the CPU
    would print CPU figures under a GPU check's name."""
    import torch

    if requested == "cpu":
        return "cpu"
    if not torch.cuda.is_available():
        sys.exit(
            "gpu_check: no CUDA device is visible to torch "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}). "
            "This check is for a GPU machine; `--device cpu` runs its code paths on the CPU."
        )
    return "cuda"


def peak_tflops(device_name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return value
    return None


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


@dataclass
class Part:
    name: str
    seconds: float = 0.0
    peak_memory_gib: float | None = None
    """Peak GPU memory allocated by torch during the part (models already resident included);
    None on the CPU."""
    peak_rss_gib: float | None = None
    """The process's peak resident memory so far (CPU runs; it never goes down)."""
    figures: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@contextmanager
def part(name: str, device: str, parts: list[Part]) -> Iterator[Part]:
    """Time one part, take its peak memory and keep its error, appending its Part to `parts`."""
    import torch

    record = Part(name)
    print(f"\n[{name}]", flush=True)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    t0 = time.perf_counter()
    try:
        yield record
    except Exception as e:  # the other parts still run: one GPU session should show them all
        traceback.print_exc()
        record.error = f"{type(e).__name__}: {e}"
        print(f"  FAILED: {record.error}", flush=True)
    sync(device)
    record.seconds = time.perf_counter() - t0
    if device == "cuda":
        record.peak_memory_gib = torch.cuda.max_memory_allocated() / 2**30
        memory = f"peak GPU memory {record.peak_memory_gib:.2f} GiB"
    else:
        record.peak_rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        memory = f"peak RSS (process) {record.peak_rss_gib:.2f} GiB"
    print(f"  {memory}; wall {record.seconds:.1f} s", flush=True)
    parts.append(record)


# -- models and inputs --------------------------------------------------------------------------


def synthetic_tokenizer(size: int) -> Any:
    """A word-level tokenizer of `size` tokens: specials, then `t0`, `t1`, …, and last the words
    `Yes` and `No` (the pointwise judge reads their logits); any other word is <unk>. Built in
    memory, so the check needs no tokenizer files; a chat template makes it usable by recast's
    chat_ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>"]
    vocab = {t: i for i, t in enumerate(specials)}
    words = [f"t{i}" for i in range(size - len(specials) - 2)] + ["Yes", "No"]
    vocab.update({w: len(specials) + i for i, w in enumerate(words)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    out = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=["<|user|>", "<|assistant|>"],
    )
    out.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} </s> {% endfor %}"
        "{% if add_generation_prompt %}<|assistant|> {% endif %}"
    )
    return out


def load_tokenizer(kind: str, vocab: int) -> tuple[Any, str]:
    """(tokenizer, description). 'auto': SmolLM2's if it is in the local cache, else synthetic;
    the packaged models are never fetched from here."""
    from recast.models.registry import is_fetched

    if kind in ("auto", "smollm2") and is_fetched("smollm2-135m-instruct"):
        from recast.models.load import load_tokenizer as load_packaged

        tok = load_packaged("smollm2-135m-instruct")
        return tok, f"SmolLM2-135M-Instruct's (local cache), {len(tok)} tokens"
    if kind == "smollm2":
        sys.exit(
            "gpu_check: --tokenizer smollm2 asked for, but smollm2-135m-instruct is not in the "
            "local model cache (this check never fetches it)"
        )
    # two ids short of the model's vocabulary: the refiner's [Z_s], [Z_e] then fill it exactly
    return synthetic_tokenizer(vocab - 2), f"synthetic word-level, {vocab - 2} tokens"


def build_model(shape: dict[str, Any], vocab: int, tokenizer: Any, dtype: Any, device: str) -> Any:
    """A causal LM with random weights (Llama, or Qwen2 where `shape` says "architecture":
    "qwen2"), made directly in `dtype` on `device` (no fp32 copy of billions of weights on the
    host first)."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    fields = dict(shape)
    qwen2 = fields.pop("architecture", "llama") == "qwen2"
    config = (Qwen2Config if qwen2 else LlamaConfig)(
        vocab_size=vocab,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **fields,
    )
    return _made_on(Qwen2ForCausalLM if qwen2 else LlamaForCausalLM, config, dtype, device)


def _made_on(cls: Any, config: Any, dtype: Any, device: str) -> Any:
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = cls(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def n_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def flop_counts(model: Any) -> tuple[int, int, int, int]:
    """(layer parameters, output head parameters, layers, hidden): the input embedding is a
    lookup, not a matmul, so it costs no FLOPs; the head is counted on its own because `score`
    applies it only at target positions."""
    head = model.get_output_embeddings().weight.numel()
    embed = model.get_input_embeddings().weight.numel()
    unique = n_params(model)  # a tied head is one tensor, counted once here
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    body = unique - embed - (0 if tied else head)
    return body, head, model.config.num_hidden_layers, model.config.hidden_size


class Texts:
    """Random token sequences as text in the tokenizer's own words."""

    def __init__(self, tokenizer: Any, seed: int, high: int | None = None) -> None:
        import numpy as np

        self.tokenizer = tokenizer
        self.rng = np.random.default_rng(seed)
        self.low = max(tokenizer.all_special_ids) + 1  # specials come first in both tokenizers
        # the base vocabulary, without added tokens; `high` keeps to the words that a smaller
        # synthetic tokenizer (the reward model's) knows as well
        self.high = min(tokenizer.vocab_size, high or tokenizer.vocab_size)

    def __call__(self, n: int) -> str:
        ids = self.rng.integers(self.low, self.high, n).tolist()
        return self.tokenizer.decode(ids, skip_special_tokens=True)


# -- the parts ------------------------------------------------------------------------------------


def matmul_tflops(device: str, dtype: Any, n: int) -> float:
    """TFLOP/s of one n×n×n product in `dtype`: what this device reaches on the easiest matmul,
    so the scoring share can be read against it as well as against the datasheet."""
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    reps = 10
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def run_generator(
    name: str,
    model: Any,
    tokenizer: Any,
    sizes: Sizes,
    args: argparse.Namespace,
    texts: Texts,
    peak: float | None,
    reference: float,
    record: Part,
) -> Any:
    """`score` and `generate` of LocalGenerator on one model; returns the generator."""
    from recast.config import GeneratorParams
    from recast.generator.base import Sampling
    from recast.generator.local import LocalGenerator, chat_ids

    params = GeneratorParams(model=f"random:{name}", batch_size=args.batch_size)
    gen = LocalGenerator(params, model=model, tokenizer=tokenizer)
    body, head, layers, hidden = flop_counts(model)
    record.figures["params"] = n_params(model)
    print(f"  {n_params(model) / 1e6:,.1f} M parameters, generator.batch_size {params.batch_size}")

    prompts = [texts(sizes.prompt_tokens) for _ in range(sizes.score_samples)]
    targets = [texts(sizes.target_tokens) for _ in range(sizes.score_samples)]
    lengths = [len(chat_ids(tokenizer, p)) for p in prompts]
    tails = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in targets]
    gen.score(prompts[: params.batch_size], targets[: params.batch_size])  # warm-up: kernels
    sync(gen.device.type)
    t0 = time.perf_counter()
    scores = gen.score(prompts, targets)
    sync(gen.device.type)
    seconds = time.perf_counter() - t0
    tokens = sum(lengths) + sum(tails)
    flops = (
        2 * body * tokens
        + 2 * head * sum(tails)
        + sum(2 * (a + b) ** 2 * hidden * layers for a, b in zip(lengths, tails, strict=True))
    )
    achieved = flops / seconds / 1e12
    score = {
        "samples": len(prompts),
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "tflops": achieved,
        "share_of_peak": achieved / peak if peak else None,
        "share_of_matmul": achieved / reference,
        "mean_ce": sum(scores) / len(scores),
    }
    record.figures["score"] = score
    share = f"{score['share_of_peak']:.1%} of bf16 peak, " if peak else ""
    print(
        f"  score    : {len(prompts)} samples, {tokens:,} tokens in {seconds:.2f} s = "
        f"{score['tokens_per_s']:,.0f} tokens/s; {achieved:.3g} TFLOP/s = {share}"
        f"{score['share_of_matmul']:.1%} of the measured matmul (mean CE {score['mean_ce']:.2f})",
        flush=True,
    )

    sampling = Sampling(max_new_tokens=sizes.new_tokens, temperature=0.0, seed=0)
    gen_prompts = [texts(sizes.gen_prompt_tokens) for _ in range(sizes.gen_prompts)]
    gen.generate(gen_prompts[:2], replace(sampling, max_new_tokens=2))  # warm-up
    counter = count_decoded(model)
    sync(gen.device.type)
    t0 = time.perf_counter()
    gen.generate(gen_prompts, sampling)
    sync(gen.device.type)
    seconds = time.perf_counter() - t0
    new = counter()
    record.figures["generate"] = {
        "prompts": len(gen_prompts),
        "new_tokens": new,
        "seconds": seconds,
        "tokens_per_s": new / seconds,
    }
    print(
        f"  generate : {len(gen_prompts)} prompts × ≤{sizes.new_tokens} new tokens (greedy) = "
        f"{new:,} tokens in {seconds:.2f} s = {new / seconds:,.0f} tokens/s",
        flush=True,
    )
    return gen


def count_decoded(model: Any) -> Callable[[], int]:
    """Wrap `model.generate` to count the token positions it decodes (rows × new columns).

    Counted from its output, not from the answers' text: a random model with tied embeddings
    tends to repeat its last input token (here a special one, which decoding drops), so the
    text can be empty although every position was computed. Returns a reader of the count."""
    original = model.generate
    total = [0]

    def counted(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        total[0] += out.shape[0] * (out.shape[1] - kwargs["input_ids"].shape[1])
        return out

    model.generate = counted
    return lambda: total[0]


def make_pairs(texts: Texts, n: int, query: int, answer: int) -> list[Any]:
    from recast.records import PreferencePair

    return [
        PreferencePair(
            source="gpu-check", prompt=texts(query), chosen=texts(answer), rejected=texts(answer)
        )
        for _ in range(n)
    ]


def run_search_part(
    refiner: Any, generator: Any, pairs: list[Any], sizes: Sizes, record: Part
) -> None:
    """One CMA-ES iteration as `recast search` runs it (no rewrite guard: its lexical check
    would send x in place of every random-token x', and scoring would then be cache hits)."""
    from recast.config import CmaesParams
    from recast.search import run_search

    # δ_σ 0.3, not the paper's 0.001: with random weights so small a step leaves every
    # candidate's x' equal to F(0)'s, and the population would be all cache hits, never scored.
    params = CmaesParams(
        iterations=1,
        delta_sigma=0.3,
        stop_on_flat_fitness=False,
        max_target_tokens=sizes.answer_tokens,
    )
    rows: list[dict[str, float]] = []
    # Count what reaches the generator: identical x' across candidates (likely with σ_0 this
    # small and random weights) are cache hits in Fitness and are not scored again.
    scored = {"samples": 0, "seconds": 0.0}
    original = generator.score

    def counted(prompts: list[str], targets: list[str]) -> list[float]:
        t0 = time.perf_counter()
        out = original(prompts, targets)  # returns Python floats: the device has synced
        scored["samples"] += len(prompts)
        scored["seconds"] += time.perf_counter() - t0
        return out

    generator.score = counted
    try:
        with tempfile.TemporaryDirectory() as out:
            result, space = run_search(
                refiner,
                generator,
                pairs,
                params,
                out,
                sizes.refined_tokens,
                resume=False,
                on_iteration=rows.append,
            )
    finally:
        del generator.score  # back to the class's method
    if result.iterations != 1 or len(rows) != 1:
        raise RuntimeError(f"expected one CMA-ES iteration, got {result.iterations}")
    row = rows[0]
    record.figures["search"] = {
        "es_pairs": len(pairs),
        "popsize": space.popsize,
        "fitness_at_zero": result.fitness_at_zero,
        "best_fitness": result.best_fitness,
        "iteration_samples_per_s": row["samples_per_s"],
        "iteration_seconds": space.popsize * len(pairs) / row["samples_per_s"],
        "evaluations": result.evaluations,
        "generator_scored_samples": scored["samples"],
        "generator_score_seconds": scored["seconds"],
    }
    print(
        f"  search   : |D_es| {len(pairs)}, popsize {space.popsize}, x' ≤{sizes.refined_tokens} "
        f"tokens; F(0) {result.fitness_at_zero:.3f}, best {result.best_fitness:.3f}; the "
        f"iteration evaluated {space.popsize * len(pairs)} candidate·samples at "
        f"{row['samples_per_s']:.1f}/s; with F(0), the generator scored {scored['samples']} "
        f"distinct (x', y) in {scored['seconds']:.2f} s (∇e^b is in the wall time only)",
        flush=True,
    )


def run_finetune_part(
    refiner: Any, pairs: list[Any], texts: Texts, sizes: Sizes, record: Part
) -> None:
    """One step of Eq. 12 (CE to x* + ω·KL to the frozen q_im), as a training round runs it."""
    import torch

    from recast.config import Params
    from recast.refiner.prompts import p_x
    from recast.training import finetune

    rp = replace(
        Params().refiner,
        batch_size=len(pairs),
        epochs=1,
        lora=False,
        max_refined_tokens=sizes.refined_tokens,
        truth_max_tokens=sizes.answer_tokens,
    )
    q_im = copy.deepcopy(refiner)  # the round's frozen target network, as training._round does
    x_star = [texts(sizes.refined_tokens) for _ in pairs]
    layers = refiner.model.model.layers
    watched = {
        "layers.0.self_attn.q_proj": layers[0].self_attn.q_proj.weight,
        "layers.-1.mlp.down_proj": layers[-1].mlp.down_proj.weight,
    }
    before = {k: w.detach().clone() for k, w in watched.items()}
    tokens = sum(
        len(refiner.prefix_ids(p_x(p.prompt)))
        + 2
        + len(refiner.target_ids(x, sizes.refined_tokens))
        for p, x in zip(pairs, x_star, strict=True)
    )
    t0 = time.perf_counter()
    stats = finetune(refiner, q_im, pairs, x_star, rp)
    sync(refiner.device.type)
    seconds = time.perf_counter() - t0
    if len(stats) != 1:
        raise RuntimeError(f"expected one fine-tuning step, got {len(stats)}")
    # In bf16 an AdamW step of lr 1e-5 is below half a unit in the last place of most weights
    # (bf16 keeps 8 significant bits), so it rounds away: this share shows how much survived.
    changed = {k: float((watched[k] != before[k]).float().mean()) for k in watched}
    del q_im
    record.figures["finetune"] = {
        "batch": len(pairs),
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "loss": stats[0].loss,
        "ce": stats[0].ce,
        "kl": stats[0].kl,
        "lr": rp.lr,
        "share_of_weights_changed": changed,
    }
    shares = ", ".join(f"{k} {v:.1%}" for k, v in changed.items())
    print(
        f"  finetune : 1 step, batch {len(pairs)}, {tokens:,} p_im tokens in {seconds:.2f} s = "
        f"{tokens / seconds:,.0f} tokens/s (first step: optimizer state allocated here); loss "
        f"{stats[0].loss:.3f} (CE {stats[0].ce:.3f}, KL {stats[0].kl:.4f}); weights changed by "
        f"the step at lr {rp.lr:g}: {shares}",
        flush=True,
    )
    if not all(torch.isfinite(w).all() for w in watched.values()):
        raise RuntimeError("non-finite weights after the fine-tuning step")


# -- main ---------------------------------------------------------------------------------------


def run_serve_part(refiner: Any, texts: Texts, sizes: Sizes, device: str, record: Part) -> None:
    """`recast serve`'s refinement: the same queries through the micro-batcher with batches of
    up to serve_queries, then one at a time (batches of 1), on serve's refine path without the
    guard (its check would only add the same CPU work to both).

    Each is measured twice: a first ("cold") pass pays for the shapes it meets for the first
    time (on an H100, cuDNN attention plans and GEMM choices for batch 16 cost about 4 s),
    a second ("warm") pass is the steady state of a server that has seen them."""
    import asyncio

    from recast.serve.batcher import throughput
    from recast.serve.champion import default_refine

    n = sizes.serve_queries
    queries = [texts(sizes.query_tokens) for _ in range(n)]
    refine_with = default_refine(
        sizes.refined_tokens, guard=False, check_encoder=None, batch_size=n
    )

    batches: list[int] = []  # the sizes the batcher actually handed over: a rate alone
    # cannot show whether "batched" ran as batches

    def refine_batch(xs: list[str]) -> Any:
        batches.append(len(xs))
        out = refine_with(refiner, xs)
        sync(device)
        return out

    figures: dict[str, Any] = {"queries": n, "max_new_tokens": sizes.refined_tokens}
    for name, max_batch in (("single", 1), ("batched", n)):
        for state in ("cold", "warm"):
            batches.clear()
            rate = asyncio.run(throughput(refine_batch, queries, max_batch))
            figures[f"{name}_{state}_queries_per_s"] = rate
            figures[f"{name}_{state}_batches"] = list(batches)
    for state in ("cold", "warm"):
        figures[f"speedup_{state}"] = (
            figures[f"batched_{state}_queries_per_s"] / figures[f"single_{state}_queries_per_s"]
        )
    record.figures["serve"] = figures
    print(
        f"  serve    : {n} queries, x' ≤{sizes.refined_tokens} tokens, micro-batched (≤{n}) vs one "
        "at a time, queries/s: "
        + "; ".join(
            f"{state} {figures[f'batched_{state}_queries_per_s']:.2f} vs "
            f"{figures[f'single_{state}_queries_per_s']:.2f} = {figures[f'speedup_{state}']:.1f}x"
            for state in ("cold", "warm")
        ),
        flush=True,
    )


def run_reward_part(sizes: Sizes, device: str, record: Part) -> Any:
    """r_ω as `recast reward` trains it (Eq. 4, AdamW, fp32 as on the CPU, the encoder
    fine-tuned) for `reward_steps` steps, then its scoring; returns the trained RewardModel.
    Its tokenizer is a synthetic one of the encoder's vocabulary (MiniLM's is never fetched)."""
    import torch
    from transformers import BertConfig, BertModel

    from recast.config import Params
    from recast.evaluation.reward import RewardModel, train_reward

    rp = Params().reward
    tokenizer = synthetic_tokenizer(sizes.reward_encoder["vocab_size"])
    torch.manual_seed(200)
    encoder = _made_on(BertModel, BertConfig(**sizes.reward_encoder), torch.float32, device)
    model = RewardModel(encoder, tokenizer, sizes.reward_max_length).to(device)
    words = Texts(tokenizer, seed=1)
    pairs = make_pairs(
        words, sizes.reward_steps * sizes.reward_batch, sizes.judge_question_words,
        sizes.judge_answer_words,
    )  # fmt: skip
    record.figures["params"] = n_params(model)
    t0 = time.perf_counter()
    losses = train_reward(model, pairs, epochs=1, lr=rp.lr, batch_size=sizes.reward_batch)
    sync(device)
    seconds = time.perf_counter() - t0
    if len(losses) != sizes.reward_steps or not all(math.isfinite(x) for x in losses):
        raise RuntimeError(f"reward training: {len(losses)} steps, losses {losses[:3]} …")
    questions = [p.prompt for p in pairs for _ in (0, 1)]
    answers = [a for p in pairs for a in (p.chosen, p.rejected)]
    model.score(questions[:4], answers[:4])  # warm-up: eval-mode shapes
    sync(device)
    t1 = time.perf_counter()
    scores = model.score(questions, answers)
    sync(device)
    scoring = time.perf_counter() - t1
    record.figures["reward"] = {
        "steps": len(losses),
        "batch": sizes.reward_batch,
        "max_length": sizes.reward_max_length,
        "seconds": seconds,
        "seconds_per_100_steps": 100 * seconds / len(losses),
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "scored": len(scores),
        "scored_per_s": len(scores) / scoring,
    }
    print(
        f"  reward   : {n_params(model) / 1e6:.1f} M parameters, {len(losses)} steps of Eq. 4 "
        f"(batch {sizes.reward_batch}, ≤{sizes.reward_max_length} tokens, fp32) in "
        f"{seconds:.2f} s = {100 * seconds / len(losses):.1f} s per 100 steps (loss "
        f"{losses[0]:.3f} -> {losses[-1]:.3f}); scoring {len(scores) / scoring:,.0f} answers/s",
        flush=True,
    )
    return model


WAYS = ("filed", "today", "shared", "now", "ensemble")
"""The pointwise judge as filed (two passes per answer, whole answers), before the shared prefix
(one pass, whole prompts), with the prefix always shared, as `judge_from` builds it now (the
prefix shared where the backend says it pays), and the default ensemble (r_ω + now)."""


class _ScoreOnly:
    """The backend seen through `score` alone, as the judge issue 11 was filed against used
    it: PointwiseJudge then runs one pass for "Yes" and one for "No" per answer."""

    def __init__(self, backend: Any) -> None:
        self.score = backend.score


def run_judge_part(
    model: Any, tokenizer: Any, reward: Any, texts: Texts, sizes: Sizes, args: argparse.Namespace,
    record: Part,
) -> None:  # fmt: skip
    """The pointwise judge the five WAYS on the same pairs, each timed cold and then warm (a
    fresh judge and an emptied prefix cache, so the warm pass recomputes everything but meets
    shapes it has seen). Also how far the one-pass log-odds are from the two-pass ones and the
    shared-prefix ones from whole prompts, in bf16, beside the spread of the log-odds."""
    import statistics

    from recast.config import GeneratorParams
    from recast.evaluation.judge import EnsembleJudge, PointwiseJudge, RewardJudge
    from recast.generator.local import LocalGenerator

    params = GeneratorParams(model=f"random:{sizes.judge[0]}", batch_size=args.batch_size)
    gen = LocalGenerator(params, model=model, tokenizer=tokenizer)
    n, cut = sizes.judge_pairs, sizes.judge_max_answer_words
    questions = [texts(sizes.judge_question_words) for _ in range(n)]
    ours = [texts(sizes.judge_answer_words) for _ in range(n)]
    other = [texts(sizes.judge_answer_words) for _ in range(n)]
    record.figures["params"] = n_params(model)

    def pointwise(way: str) -> PointwiseJudge:
        if way == "filed":
            return PointwiseJudge(_ScoreOnly(gen), max_answer_words=None, share_prefix=False)
        share = {"today": False, "shared": True}.get(way)  # now: as judge_from builds it
        return PointwiseJudge(gen, max_answer_words=cut, share_prefix=share)

    figures: dict[str, Any] = {"pairs": n, "answer_words": sizes.judge_answer_words, "cut": cut}
    log_odds: dict[str, list[float]] = {}
    figures["now_shares_prefix"] = pointwise("now").share_prefix
    for way in WAYS:
        for state in ("cold", "warm"):
            gen._kv_cache.clear()  # the warm pass computes the header again
            point = pointwise("now" if way == "ensemble" else way)
            judge: Any = EnsembleJudge([RewardJudge(reward), point]) if way == "ensemble" else point
            sync(gen.device.type)
            t0 = time.perf_counter()
            judged = judge.judge(questions, ours, other)
            sync(gen.device.type)
            seconds = time.perf_counter() - t0
            figures[f"{way}_{state}_pairs_per_s"] = n / seconds
        figures[f"{way}_outcomes"] = dict(judged.counts())
        if way != "ensemble":
            log_odds[way] = point.log_odds(questions + questions, ours + other)  # cached
    for way in WAYS[1:]:
        for base in ("filed", "today"):
            if way != base:
                figures[f"{way}_over_{base}_warm"] = (
                    figures[f"{way}_warm_pairs_per_s"] / figures[f"{base}_warm_pairs_per_s"]
                )
    # the filed judge reads whole answers, the others the cut ones: compare like with like
    whole = PointwiseJudge(gen, max_answer_words=None, share_prefix=False)
    one_pass_whole = whole.log_odds(questions + questions, ours + other)
    figures["log_odds_std"] = statistics.pstdev(log_odds["today"])
    figures["max_diff_one_vs_two_passes"] = max(
        abs(a - b) for a, b in zip(one_pass_whole, log_odds["filed"], strict=True)
    )
    figures["max_diff_shared_vs_whole_prompts"] = max(
        abs(a - b) for a, b in zip(log_odds["shared"], log_odds["today"], strict=True)
    )
    record.figures["judge"] = figures
    rates = "; ".join(
        f"{way} {figures[f'{way}_cold_pairs_per_s']:.1f} / {figures[f'{way}_warm_pairs_per_s']:.1f}"
        for way in WAYS
    )
    print(
        f"  judge    : {n} pairs, answers {sizes.judge_answer_words} words (cut at {cut} except "
        f"filed); pairs/s cold / warm: {rates}; warm, now over filed "
        f"{figures['now_over_filed_warm']:.1f}x (shares the prefix: "
        f"{figures['now_shares_prefix']}), ensemble over filed "
        f"{figures['ensemble_over_filed_warm']:.1f}x, shared over today "
        f"{figures['shared_over_today_warm']:.1f}x; log-odds: spread (std) "
        f"{figures['log_odds_std']:.3g}, one pass vs two passes max |Δ| "
        f"{figures['max_diff_one_vs_two_passes']:.3g}, shared prefix vs whole prompts max |Δ| "
        f"{figures['max_diff_shared_vs_whole_prompts']:.3g}",
        flush=True,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny shapes (seconds on a CPU)")
    ap.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    ap.add_argument(
        "--tokenizer",
        choices=["auto", "synthetic", "smollm2"],
        default="auto",
        help="auto: SmolLM2's if in the local model cache, else synthetic",
    )
    ap.add_argument(
        "--batch-size", type=int, default=16, help="generator.batch_size (16: the default)"
    )
    ap.add_argument("--layers-8b", type=int, default=8, help="layers of the 8B-shaped stack")
    ap.add_argument(
        "--peak-tflops", type=float, default=None, help="bf16 peak, if not in the table"
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_imports()
    device = pick_device(args.device)

    import torch
    import transformers

    dtype = getattr(torch, args.dtype)
    if device == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        sys.exit(f"gpu_check: {torch.cuda.get_device_name()} does not support bf16")
    sizes = quick_sizes() if args.quick else full_sizes(args.layers_8b)
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    # the table holds bf16 peaks: a float32 run has none to be compared with
    table = peak_tflops(name) if device == "cuda" and args.dtype == "bfloat16" else None
    peak = args.peak_tflops or table
    started = time.perf_counter()
    parts: list[Part] = []
    print(
        f"device {name} ({device}, {args.dtype}); torch {torch.__version__}, transformers "
        f"{transformers.__version__}; bf16 dense peak: "
        + (f"{peak:g} TFLOP/s" if peak else "not in the table (--peak-tflops sets it)")
        + ("; quick (tiny) shapes" if args.quick else ""),
        flush=True,
    )

    tokenizer, described = load_tokenizer(args.tokenizer, sizes.vocab)
    # the refiner's [Z_s], [Z_e] must fit the model's rows (SmolLM2's tokenizer is smaller)
    vocab = max(sizes.vocab, len(tokenizer) + 2)
    texts = Texts(tokenizer, seed=0)
    print(f"tokenizer: {described}; model vocabulary {vocab}")
    reference = matmul_tflops(device, dtype, sizes.matmul)
    print(f"{sizes.matmul}³ {args.dtype} matmul: {reference:.3g} TFLOP/s", flush=True)

    search_generator: Any = None
    for index, (gname, shape) in enumerate(sizes.generators):
        with part(f"generator {gname}", device, parts) as record:
            torch.manual_seed(index)
            model = build_model(shape, vocab, tokenizer, dtype, device)
            gen = run_generator(
                gname, model, tokenizer, sizes, args, texts, peak, reference, record
            )
            if index == 0:  # only the first stays resident, for the search
                search_generator = gen
        model = gen = None
        if device == "cuda":
            torch.cuda.empty_cache()

    from recast.refiner.model import Refiner

    rname, rshape = sizes.refiner
    pairs = make_pairs(texts, sizes.es_pairs, sizes.query_tokens, sizes.answer_tokens)
    refiner: Any = None
    search = f"CMA-ES iteration (refiner {rname}, generator {sizes.generators[0][0]})"
    with part(search, device, parts) as record:
        if search_generator is None:
            raise RuntimeError(f"skipped: generator {sizes.generators[0][0]} failed")
        torch.manual_seed(100)
        refiner = Refiner(
            build_model(rshape, vocab, tokenizer, dtype, device), copy.deepcopy(tokenizer)
        )
        run_search_part(refiner, search_generator, pairs, sizes, record)
    search_generator = None
    if device == "cuda":
        torch.cuda.empty_cache()
    with part(f"fine-tuning step (refiner {rname})", device, parts) as record:
        if refiner is None:
            raise RuntimeError("skipped: the refiner could not be built")
        run_finetune_part(refiner, pairs[: sizes.ft_pairs], texts, sizes, record)
    with part(f"serve micro-batching (refiner {rname})", device, parts) as record:
        if refiner is None:
            raise RuntimeError("skipped: the refiner could not be built")
        run_serve_part(refiner, texts, sizes, device, record)
    refiner = None
    if device == "cuda":
        torch.cuda.empty_cache()

    reward: Any = None
    encoder_name = "MiniLM-L6" if sizes.reward_encoder is MINILM_L6 else "tiny BERT"
    with part(f"reward model (encoder {encoder_name})", device, parts) as record:
        reward = run_reward_part(sizes, device, record)
    jname, jshape = sizes.judge
    with part(f"judge (pointwise {jname}, ensemble with r_ω)", device, parts) as record:
        if reward is None:
            raise RuntimeError("skipped: the reward model failed")
        torch.manual_seed(300)
        judge_vocab = max(sizes.judge_vocab, len(tokenizer))
        model = build_model(jshape, judge_vocab, tokenizer, dtype, device)
        # words the reward model's synthetic tokenizer knows too, so r_ω reads the same text
        words = Texts(tokenizer, seed=3, high=sizes.reward_encoder["vocab_size"] - 2)
        run_judge_part(model, tokenizer, reward, words, sizes, args, record)
    model = None

    total = time.perf_counter() - started
    failed = [p.name for p in parts if p.error]
    print(f"\ntotal wall {total:.1f} s ({device}, {args.dtype})", flush=True)
    if failed:
        print(f"FAILED parts: {'; '.join(failed)}", file=sys.stderr, flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "device": name,
                    "device_type": device,
                    "dtype": args.dtype,
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "tokenizer": described,
                    "peak_tflops": peak,
                    "matmul_tflops": reference,
                    "quick": args.quick,
                    "total_seconds": total,
                    "parts": [asdict(p) for p in parts],
                },
                indent=2,
            )
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
