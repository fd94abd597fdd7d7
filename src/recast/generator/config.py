"""The generator's params sections (`generator`, `sampling`), beside its backends.

Loaded and checked by recast.config (params.yaml, `--set`); each field's docstring says what it
does."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class GeneratorParams:
    """The frozen black-box generator f."""

    backend: str = "local"
    """'local' (transformers), 'http' (OpenAI-compatible server) or 'vllm' (in-process)."""
    model: str = "smollm2-135m-instruct"
    """Packaged alias, hub id, local HF folder or GGUF file (local / vllm backends); the served
    model name (http backend)."""
    dtype: str = "auto"
    """'auto' (bf16 on GPUs and on CPUs with avx512_bf16 for models over 300M params, else
    fp32), or 'float32' / 'bfloat16' / 'float16'."""
    device: str = "auto"
    """'auto' (cuda if available), 'cpu' or 'cuda'."""
    batch_size: int = 16
    """Most sequences per forward pass (local)."""
    max_batch_tokens: int | None = None
    """Most padded prompt tokens per batch (local); None: 16384 on GPU; on CPU 1024 for
    scoring (compute-bound: padding is pure waste, see benchmarks/generator_score.py) and 8192
    for generation (a decoding step costs about the same for 2 rows as for 16)."""
    max_length: int = 2048
    """Prompt + target token budget; longer inputs are an error, not a silent truncation."""
    endpoints: list[str] = field(default_factory=list)
    """http: base URLs (…/v1) to spread requests over, round-robin."""
    api_key_env: str = "OPENAI_API_KEY"
    """http: environment variable holding the bearer token (may be unset for local servers)."""
    timeout_s: float = 60.0
    """http: per-request timeout."""
    max_retries: int = 4
    """http: retries on 5xx, timeouts and malformed JSON, with exponential backoff."""
    backoff_s: float = 0.5
    """http: first backoff delay; doubles each retry."""
    concurrency: int = 8
    """http: requests in flight at once, over all endpoints."""
    score_mode: str = "echo"
    """http: 'echo' (completions with echo + logprobs) or 'prompt_logprobs' (vLLM's extension)."""
    chat_template: str | None = None
    """http: model spec whose tokenizer renders the chat template for `score` (the server's
    completions endpoint takes raw text); None sends the user text as-is."""


@dataclass
class SamplingParams:
    """Decoding defaults for `recast generate` and everything that samples from f."""

    max_new_tokens: int = 256
    """Upper bound on generated tokens."""
    temperature: float = 0.0
    """0 means greedy."""
    top_p: float = 1.0
    """Nucleus mass."""
    top_k: int = 0
    """Top-k (0: off)."""
    seed: int | None = 0
    """Sampling seed."""
