"""The black-box generator f: one interface, three backends (local, http, vllm)."""

from __future__ import annotations

from recast.errors import ConfigError
from recast.generator.base import Generator, Sampling
from recast.generator.config import GeneratorParams

__all__ = ["Generator", "Sampling", "make_generator"]


def make_generator(params: GeneratorParams) -> Generator:
    """Build the backend named in params (imports are lazy: vllm is an optional extra)."""
    if params.backend == "local":
        from recast.generator.local import LocalGenerator

        return LocalGenerator(params)
    if params.backend == "http":
        from recast.generator.http import HttpGenerator

        render = None
        if params.chat_template:
            from recast.generator.local import chat_ids
            from recast.models.load import load_tokenizer

            tokenizer = load_tokenizer(params.chat_template)

            def render(text: str) -> str:
                return tokenizer.decode(chat_ids(tokenizer, text))

        return HttpGenerator(params, render_chat=render)
    if params.backend == "vllm":
        from recast.generator.vllm import VllmGenerator

        return VllmGenerator(params)
    raise ConfigError(f"generator.backend must be local, http or vllm, got {params.backend!r}")
