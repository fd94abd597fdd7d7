"""The LLM behind the proxy: an OpenAI-compatible server over HTTP, or the local generator.

Errors are mapped once, here: a timeout is 504, an unreachable server, a 5xx or a body that is
not the JSON it should be is 502, each with the upstream's own message; a 4xx is the client's
problem (bad model name, context too long, wrong key) and is passed through as it came.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from recast.generator.base import Generator, Sampling
from recast.serve.batcher import MicroBatcher, QueueFull

_MAX_MESSAGE = 2000  # characters of an upstream error body quoted back to the client


class UpstreamError(Exception):
    """The upstream failed; `status` is what the proxy answers (502, 504, or a passed-through
    4xx), `body` the OpenAI-style error object."""

    def __init__(self, status: int, message: str, kind: str, body: dict[str, Any] | None = None):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind
        self.body = body or {"error": {"message": message, "type": kind, "code": status}}
        self.headers: dict[str, str] = {}


class Stream(Protocol):
    """An opened streaming answer: its status was checked, its chunks are still to come."""

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class Upstream(Protocol):
    name: str
    """Where answers come from, as shown by /healthz (never a secret)."""

    async def chat(self, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]: ...

    async def open_stream(self, body: dict[str, Any], headers: dict[str, str]) -> Stream: ...

    async def models(self, headers: dict[str, str]) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


def error_message(text: str) -> str:
    """The message in an OpenAI-style error body, else the body itself (cut)."""
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:_MAX_MESSAGE]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"][:_MAX_MESSAGE]
        if isinstance(err, str):
            return err[:_MAX_MESSAGE]
        if isinstance(data.get("detail"), str):
            return data["detail"][:_MAX_MESSAGE]
    return text.strip()[:_MAX_MESSAGE]


class HttpUpstream:
    """An OpenAI-compatible server (vLLM, llama.cpp, a hosted API) at `base_url` (…/v1)."""

    def __init__(
        self, base_url: str, timeout_s: float, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = httpx.URL(self.base_url).copy_with(username=None, password=None).__str__()
        self.timeout_s = timeout_s
        # read= is the gap between two chunks, so a long stream that keeps talking never times
        # out while a silent upstream does; connect stays short so a dead host fails fast.
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0))
        self.client = httpx.AsyncClient(
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{path}"

    def _failure(self, error: Exception, what: str) -> UpstreamError:
        if isinstance(error, httpx.TimeoutException):
            return UpstreamError(
                504,
                f"upstream {self.name} did not answer {what} within {self.timeout_s:g} s "
                f"({type(error).__name__})",
                "upstream_timeout",
            )
        return UpstreamError(
            502,
            f"cannot reach upstream {self.name}: {type(error).__name__}: {error}",
            "upstream_unreachable",
        )

    def _status_error(self, response: httpx.Response, text: str) -> UpstreamError:
        message = error_message(text) or response.reason_phrase
        if 400 <= response.status_code < 500:
            try:
                body = json.loads(text)
            except ValueError:
                body = None
            error = UpstreamError(
                response.status_code,
                message,
                "upstream_client_error",
                body if isinstance(body, dict) else None,
            )
            if "retry-after" in response.headers:  # a 429's back-off, for the client's retry
                error.headers["retry-after"] = response.headers["retry-after"]
            return error
        return UpstreamError(
            502,
            f"upstream {self.name} answered {response.status_code}: {message}",
            "upstream_error",
        )

    async def _get_json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self.client.request(method, self._url(path), **kwargs)
            text = response.text
        except httpx.HTTPError as e:
            raise self._failure(e, f"{path}") from e
        if response.status_code >= 400:
            raise self._status_error(response, text)
        try:
            data = json.loads(text)
        except ValueError as e:
            raise UpstreamError(
                502,
                f"upstream {self.name} sent malformed JSON ({len(text)} bytes, {e}): "
                f"{text[:200]!r}",
                "upstream_malformed",
            ) from e
        if not isinstance(data, dict):
            raise UpstreamError(
                502,
                f"upstream {self.name} sent {type(data).__name__}, not a JSON object",
                "upstream_malformed",
            )
        return data

    async def chat(self, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        return await self._get_json("POST", "chat/completions", json=body, headers=headers)

    async def models(self, headers: dict[str, str]) -> dict[str, Any]:
        return await self._get_json("GET", "models", headers=headers)

    async def open_stream(self, body: dict[str, Any], headers: dict[str, str]) -> Stream:
        request = self.client.build_request(
            "POST", self._url("chat/completions"), json=body, headers=headers
        )
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as e:
            raise self._failure(e, "chat/completions") from e
        if response.status_code >= 400:
            try:
                text = (await response.aread()).decode("utf-8", "replace")
            except httpx.HTTPError as e:
                text = f"(body unreadable: {e})"
            finally:
                await response.aclose()
            raise self._status_error(response, text)
        return _HttpStream(self, response)

    async def aclose(self) -> None:
        await self.client.aclose()


class _HttpStream:
    def __init__(self, upstream: HttpUpstream, response: httpx.Response) -> None:
        self.upstream, self.response = upstream, response

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response.aiter_bytes():
                yield chunk
        except httpx.HTTPError as e:
            # The client already has a 200 and part of the answer: the only way left to say
            # what happened is an error event, which OpenAI clients raise as an APIError.
            failure = self.upstream._failure(e, "the next chunk")
            yield sse({"error": {**failure.body["error"]}})
        finally:
            await self.response.aclose()

    async def aclose(self) -> None:
        await self.response.aclose()


def sse(data: dict[str, Any] | str) -> bytes:
    """One server-sent event."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


@dataclass(frozen=True)
class _Ask:
    prompt: str
    sampling: Sampling


class LocalUpstream:
    """The local generator (recast.generator) answering in this process.

    Its `generate` takes one user turn per prompt, so the last user message is what it answers;
    system prompts and earlier turns are not seen. Concurrent requests with the same sampling
    are generated in one batch on a worker thread, like refinements.
    """

    def __init__(
        self,
        generator: Generator,
        model: str,
        defaults: Sampling,
        *,
        max_batch: int = 8,
        window_s: float = 0.01,
        max_queue: int = 64,
        timeout_s: float = 120.0,
    ) -> None:
        self.generator, self.model, self.defaults = generator, model, defaults
        self.name = f"local:{model}"
        self.timeout_s = timeout_s
        self.batcher: MicroBatcher[_Ask, str] = MicroBatcher(
            self._generate,
            max_batch=max_batch,
            window_s=window_s,
            max_queue=max_queue,
            name="local generator",
        )
        self.batcher.start()

    def _generate(self, asks: list[_Ask]) -> list[str]:
        out: list[str | None] = [None] * len(asks)
        groups: dict[Sampling, list[int]] = {}
        for i, ask in enumerate(asks):
            groups.setdefault(ask.sampling, []).append(i)
        for sampling, rows in groups.items():
            answers = self.generator.generate([asks[i].prompt for i in rows], sampling)
            for i, answer in zip(rows, answers, strict=True):
                out[i] = answer
        return [a or "" for a in out]

    def _sampling(self, body: dict[str, Any]) -> Sampling:
        def pick(key: str, default: Any, kind: Callable[[Any], Any]) -> Any:
            value = body.get(key)
            if value is None:
                return default
            try:
                return kind(value)
            except (TypeError, ValueError) as e:
                raise UpstreamError(400, f"{key}: {value!r} is not valid", "invalid_request") from e

        if body.get("n") not in (None, 1):
            raise UpstreamError(400, "the local generator answers n=1 only", "invalid_request")
        # max_completion_tokens replaced max_tokens in the OpenAI API; clients send either.
        length_key = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        return Sampling(
            max_new_tokens=pick(length_key, self.defaults.max_new_tokens, int),
            temperature=pick("temperature", self.defaults.temperature, float),
            top_p=pick("top_p", self.defaults.top_p, float),
            top_k=self.defaults.top_k,
            seed=pick("seed", self.defaults.seed, int),
        )

    async def _answer(self, body: dict[str, Any]) -> tuple[str, Sampling]:
        prompt = last_user_text(body.get("messages") or [])
        if prompt is None:
            raise UpstreamError(400, "no user message with text to answer", "invalid_request")
        sampling = self._sampling(body)
        try:
            answer = await asyncio.wait_for(
                self.batcher.submit(_Ask(prompt[1], sampling)), self.timeout_s
            )
        except TimeoutError as e:
            raise UpstreamError(
                504,
                f"local generator did not answer within {self.timeout_s:g} s",
                "upstream_timeout",
            ) from e
        except UpstreamError:
            raise
        except QueueFull as e:
            raise UpstreamError(503, f"local generator: {e}", "upstream_busy") from e
        except Exception as e:
            raise UpstreamError(502, f"local generator: {e}", "upstream_error") from e
        return answer, sampling

    def _envelope(self, kind: str) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": kind,
            "created": int(time.time()),
            "model": self.model,
        }

    def _finish(self, answer: str, sampling: Sampling) -> str:
        # Generation stops at EOS or at max_new_tokens; only the tokenizer can tell which.
        tokenizer = getattr(self.generator, "tokenizer", None)
        if tokenizer is None:
            return "stop"
        n = len(tokenizer(answer, add_special_tokens=False)["input_ids"])
        return "length" if n >= sampling.max_new_tokens else "stop"

    async def chat(self, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        answer, sampling = await self._answer(body)
        return {
            **self._envelope("chat.completion"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer},
                    "finish_reason": self._finish(answer, sampling),
                }
            ],
        }

    async def open_stream(self, body: dict[str, Any], headers: dict[str, str]) -> Stream:
        # The generator has no incremental API: the answer is generated first (so its errors
        # are still a status code), then sent as role, content and finish chunks.
        answer, sampling = await self._answer(body)
        head = self._envelope("chat.completion.chunk")
        deltas: Sequence[tuple[dict[str, Any], str | None]] = (
            ({"role": "assistant", "content": ""}, None),
            ({"content": answer}, None),
            ({}, self._finish(answer, sampling)),
        )
        events = [
            sse({**head, "choices": [{"index": 0, "delta": d, "finish_reason": f}]})
            for d, f in deltas
        ]
        return _ListStream([*events, sse("[DONE]")])

    async def models(self, headers: dict[str, str]) -> dict[str, Any]:
        entry = {"id": self.model, "object": "model", "created": 0, "owned_by": "recast-local"}
        return {"object": "list", "data": [entry]}

    async def aclose(self) -> None:
        await asyncio.to_thread(self.batcher.stop)
        await asyncio.to_thread(self.generator.close)


class _ListStream:
    def __init__(self, events: list[bytes]) -> None:
        self.events = events

    async def chunks(self) -> AsyncIterator[bytes]:
        for event in self.events:
            yield event

    async def aclose(self) -> None:
        return None


def last_user_text(messages: Any) -> tuple[int, str] | None:
    """(index, text) of the last user message whose content is text: a string, or a list of
    parts with exactly one text part (images and the like beside it are left alone)."""
    if not isinstance(messages, list):
        return None
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return (index, content) if content.strip() else None
        if isinstance(content, list):
            texts = [p for p in content if isinstance(p, dict) and p.get("type") == "text"]
            if len(texts) == 1 and isinstance(texts[0].get("text"), str):
                return (index, texts[0]["text"]) if texts[0]["text"].strip() else None
        return None
    return None


def with_user_text(messages: list[Any], index: int, text: str) -> list[Any]:
    """A copy of `messages` with the text of message `index` replaced (see last_user_text)."""
    out = list(messages)
    message = dict(out[index])
    content = message["content"]
    if isinstance(content, str):
        message["content"] = text
    else:
        message["content"] = [
            {**p, "text": text} if isinstance(p, dict) and p.get("type") == "text" else p
            for p in content
        ]
    out[index] = message
    return out
