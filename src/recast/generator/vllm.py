"""The generator as an in-process vLLM engine (the `gpu` extra, in its own environment).

vLLM pins its own torch / transformers / fastapi, which break Prefect, so it is imported only
here and only when generator.backend is 'vllm'.
"""

from __future__ import annotations

import math
from typing import Any

from recast.errors import GeneratorError
from recast.generator.base import Sampling
from recast.generator.config import GeneratorParams
from recast.generator.local import chat_ids
from recast.models.load import resolve


class VllmGenerator:
    """`generate` through vLLM's chat path; `score` through `prompt_logprobs` on token ids, so
    the prompt / target boundary is exact."""

    def __init__(self, params: GeneratorParams) -> None:
        try:
            from vllm import LLM
        except ImportError as e:
            raise GeneratorError(
                "generator.backend=vllm needs vLLM: pip install 'recast[gpu]' in a separate GPU "
                f"environment ({e})"
            ) from e
        resolved = resolve(params.model)
        model = (
            resolved.path if resolved.gguf_file is None else f"{resolved.path}/{resolved.gguf_file}"
        )
        dtype = "auto" if params.dtype == "auto" else params.dtype
        self.params = params
        self.llm = LLM(model=model, dtype=dtype, max_model_len=params.max_length, seed=0)
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, prompts: list[str], sampling: Sampling) -> list[str]:
        from vllm import SamplingParams

        sp = SamplingParams(
            max_tokens=sampling.max_new_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else -1,
            seed=sampling.seed,
        )
        conversations = [[{"role": "user", "content": p}] for p in prompts]
        outputs = self.llm.chat(conversations, sp, use_tqdm=False)
        return [o.outputs[0].text.strip() for o in outputs]

    def score(self, prompts: list[str], targets: list[str]) -> list[float]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if len(prompts) != len(targets):
            raise GeneratorError(f"score: {len(prompts)} prompts but {len(targets)} targets")
        heads = [chat_ids(self.tokenizer, p) for p in prompts]
        tails = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in targets]
        requests = []
        for i, (head, tail) in enumerate(zip(heads, tails, strict=True)):
            if not tail:
                raise GeneratorError(f"score: target {i} is empty")
            if len(head) + len(tail) > self.params.max_length:
                raise GeneratorError(
                    f"score: sample {i} is {len(head) + len(tail)} tokens, over "
                    f"generator.max_length={self.params.max_length}"
                )
            requests.append(TokensPrompt(prompt_token_ids=head + tail))
        sp = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        outputs = self.llm.generate(requests, sp, use_tqdm=False)
        scores = []
        for i, (out, head, tail) in enumerate(zip(outputs, heads, tails, strict=True)):
            ids = head + tail
            values = _target_logprobs(out.prompt_logprobs, ids, len(head))
            if any(v is None or not math.isfinite(v) for v in values):
                raise GeneratorError(f"score: non-finite logprob in the target of sample {i}")
            scores.append(-sum(values) / len(values))
        return scores

    def close(self) -> None:
        self.llm = None


def _target_logprobs(prompt_logprobs: list[Any], ids: list[int], start: int) -> list[float | None]:
    """The logprob vLLM reports for each actual target token (entries are {token_id: Logprob})."""
    values: list[float | None] = []
    for position in range(start, len(ids)):
        entry = prompt_logprobs[position]
        lp = entry.get(ids[position]) if entry else None
        values.append(None if lp is None else float(lp.logprob))
    return values
