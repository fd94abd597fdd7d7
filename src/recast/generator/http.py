"""The generator behind an OpenAI-compatible HTTP server (`vllm serve`, or an OpenAI-style API).

`generate` uses /chat/completions, so the server applies the chat template. `score` needs the
log-probabilities of the prompt itself, which only the legacy /completions endpoint exposes; that
endpoint takes raw text, so the caller passes `render_chat` to build the chat-templated prompt.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx

from recast.errors import GeneratorError
from recast.generator.base import Sampling
from recast.generator.config import GeneratorParams

T = TypeVar("T")
# Raised by the response parsers when a 2xx body lacks the expected fields: retried.
_MALFORMED = (KeyError, IndexError, TypeError, ValueError)


class HttpGenerator:
    """Spreads requests round-robin over `params.endpoints`, `params.concurrency` at a time.

    Score modes (`params.score_mode`):
    - "echo": POST /completions with echo=true, logprobs=1 and max_tokens=1 (not 0, which some
      servers reject); the one generated token is ignored. Target tokens are the echoed tokens
      that start before len(text) and end after len(rendered prompt), so a token straddling the
      prompt/target boundary counts as target. This relies on `text_offset` indexing the prompt
      string as sent (OpenAI's legacy format); a server that prepends a BOS token the rendered
      prompt does not contain shifts the offsets, so prefer "prompt_logprobs" with vLLM then.
    - "prompt_logprobs": vLLM's extension. /tokenize (at the server root) gives the rendered
      prompt's token count n; the target tokens are the prompt_logprobs entries after the first n.
      A token merging across the boundary is therefore not detected; chat templates end the
      prompt with a special token or newline, so this does not happen in practice.
    """

    def __init__(
        self, params: GeneratorParams, render_chat: Callable[[str], str] | None = None
    ) -> None:
        if not params.endpoints:
            raise GeneratorError("generator http: no endpoints configured (generator.endpoints)")
        if params.score_mode not in ("echo", "prompt_logprobs"):
            raise GeneratorError(
                f"generator http: score_mode must be 'echo' or 'prompt_logprobs', "
                f"got {params.score_mode!r}"
            )
        self.params = params
        self.render_chat = render_chat
        self._endpoints = [e.rstrip("/") for e in params.endpoints]
        self._next = itertools.count()  # next() is atomic under the GIL: safe across threads
        headers = {}
        if token := os.environ.get(params.api_key_env):
            headers["Authorization"] = f"Bearer {token}"
        workers = max(1, params.concurrency)
        self._client = httpx.Client(
            timeout=params.timeout_s,
            headers=headers,
            limits=httpx.Limits(max_connections=workers, max_keepalive_connections=workers),
        )
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="recast-http")

    def generate(self, prompts: list[str], sampling: Sampling) -> list[str]:
        """One chat completion per prompt (a single user turn), in prompt order."""

        def one(prompt: str) -> str:
            body: dict[str, Any] = {
                "model": self.params.model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": sampling.max_new_tokens,
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
            }
            if sampling.top_k > 0:
                body["top_k"] = sampling.top_k  # vLLM extra; OpenAI itself would reject it
            if sampling.seed is not None:
                body["seed"] = sampling.seed
            return self._post("/chat/completions", body, _parse_chat)

        return list(self._pool.map(one, prompts))

    def score(self, prompts: list[str], targets: list[str]) -> list[float]:
        """Mean token cross-entropy (nats) of each target after its chat-rendered prompt."""
        if len(prompts) != len(targets):
            raise GeneratorError(
                f"generator http: {len(prompts)} prompts but {len(targets)} targets"
            )
        one = self._score_echo if self.params.score_mode == "echo" else self._score_prompt_lp
        return list(self._pool.map(one, range(len(prompts)), prompts, targets))

    def _score_echo(self, i: int, prompt: str, target: str) -> float:
        rendered = self.render_chat(prompt) if self.render_chat else prompt
        text = rendered + target
        body = {
            "model": self.params.model,
            "prompt": text,
            "max_tokens": 1,
            "echo": True,
            "logprobs": 1,  # 1, not 0: a falsy 0 may make a server skip the prompt logprobs
            "temperature": 0.0,
        }
        offsets, logprobs = self._post("/completions", body, _parse_echo)
        span = []
        for k, (start, lp) in enumerate(zip(offsets, logprobs, strict=True)):
            end = offsets[k + 1] if k + 1 < len(offsets) else len(text)
            if start < len(text) and end > len(rendered):
                span.append(lp)
        return _mean_ce(i, span)

    def _score_prompt_lp(self, i: int, prompt: str, target: str) -> float:
        rendered = self.render_chat(prompt) if self.render_chat else prompt
        n_prompt = self._post(
            "/tokenize", {"model": self.params.model, "prompt": rendered}, _parse_count, root=True
        )
        body = {
            "model": self.params.model,
            "prompt": rendered + target,
            "max_tokens": 1,
            "echo": False,
            "prompt_logprobs": 0,  # 0: only the prompt token's own logprob in each entry
            "temperature": 0.0,
        }
        entries = self._post("/completions", body, _parse_prompt_logprobs)
        span = []
        for entry in entries[n_prompt:]:
            if entry is not None and len(entry) != 1:
                raise GeneratorError(
                    f"generator http: sample {i}: prompt_logprobs entry has {len(entry)} "
                    "candidates, expected only the prompt token's own"
                )
            span.append(None if entry is None else next(iter(entry.values())).get("logprob"))
        return _mean_ce(i, span)

    def _post(
        self, path: str, body: dict[str, Any], parse: Callable[[Any], T], root: bool = False
    ) -> T:
        """POST with retries, moving to the next endpoint on each attempt."""
        attempts = self.params.max_retries + 1
        start = next(self._next)
        delay = self.params.backoff_s
        urls: list[str] = []
        last = ""
        for attempt in range(attempts):
            base = self._endpoints[(start + attempt) % len(self._endpoints)]
            url = (base.removesuffix("/v1") if root else base) + path
            if url not in urls:
                urls.append(url)
            try:
                resp = self._client.post(url, json=body)
            except httpx.TimeoutException as e:  # before TransportError: it is a subclass
                last = f"timeout after {self.params.timeout_s}s ({type(e).__name__})"
            except httpx.TransportError as e:
                last = f"connection failed ({type(e).__name__}: {e})"
            else:
                status, text = resp.status_code, resp.text
                if 400 <= status < 500 and status != 429:
                    raise GeneratorError(
                        f"generator http: POST {url} failed (not retried): "
                        f"HTTP {status}: {text[:200]}"
                    )
                if status >= 400:
                    last = f"HTTP {status}: {text[:200]}"
                else:
                    try:
                        data = resp.json()
                    except ValueError:
                        last = f"HTTP {status} body is not valid JSON: {text[:200]}"
                    else:
                        try:
                            return parse(data)
                        except _MALFORMED as e:
                            last = f"HTTP {status} body lacks {e!r}: {text[:200]}"
            if attempt + 1 < attempts:
                time.sleep(delay)
                delay *= 2
        raise GeneratorError(
            f"generator http: POST {', '.join(urls)} failed after {attempts} attempts: {last}"
        )

    def close(self) -> None:
        """Close the connection pool and the worker threads."""
        self._pool.shutdown(wait=True)
        self._client.close()

    def __enter__(self) -> HttpGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse_chat(data: Any) -> str:
    content = data["choices"][0]["message"]["content"]
    if not isinstance(content, str):
        raise TypeError(f"message.content is {type(content).__name__}, not str")
    return content


def _parse_echo(data: Any) -> tuple[list[int], list[float | None]]:
    lp = data["choices"][0]["logprobs"]
    offsets, logprobs = list(lp["text_offset"]), list(lp["token_logprobs"])
    if len(offsets) != len(logprobs) or not all(isinstance(o, int) for o in offsets):
        raise ValueError("logprobs.text_offset / token_logprobs do not line up")
    return offsets, logprobs


def _parse_count(data: Any) -> int:
    return int(data["count"]) if "count" in data else len(data["tokens"])


def _parse_prompt_logprobs(data: Any) -> list[dict[str, Any] | None]:
    entries = data["choices"][0]["prompt_logprobs"]
    if not isinstance(entries, list):
        raise TypeError("prompt_logprobs is not a list")
    return entries


def _mean_ce(i: int, span: list[Any]) -> float:
    """-mean(logprobs); a missing or non-finite logprob is an error, never a NaN."""
    if not span:
        raise GeneratorError(f"generator http: sample {i}: no target tokens in the response")
    for k, lp in enumerate(span):
        if not isinstance(lp, int | float) or not math.isfinite(lp):
            raise GeneratorError(f"generator http: sample {i}: target token {k} has logprob {lp!r}")
    return -sum(span) / len(span)
