"""The OpenAI-compatible proxy: refine the last user message, forward, return the answer as is.

What recast did is told without touching the OpenAI schema, in response headers:

- ``x-recast-refined``: ``true`` when x' was sent in place of x;
- ``x-recast-verdict``: the rewrite check's verdict (rewrite, copy, answers, drift,
  degenerate), or ``skipped`` (the client asked), ``none`` (no user text to refine) or
  ``error`` (the refiner failed: x was sent, the request still answered);
- ``x-recast-fallback``: ``true`` when x was sent because the guard rejected x';
- ``x-recast-refine-ms``: time spent waiting for and in the refiner;
- ``x-recast-refiner``: the refiner that served (its registry version pinned).

``x-recast-skip: 1`` on a request sends x unchanged (A/B comparisons); ``x-recast-return-refined:
1`` (or serve.return_refined) adds ``"recast": {x, x_prime, sent, verdict, reason}`` to the JSON
answer, or to the first chunk of a stream (clients ignore unknown fields).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from recast.errors import ConfigError
from recast.serve.batcher import MicroBatcher, QueueFull
from recast.serve.champion import Champion, RefineBatch, RefinedLike
from recast.serve.config import ServeParams
from recast.serve.metrics import Metrics
from recast.serve.upstream import (
    Stream,
    Upstream,
    UpstreamError,
    last_user_text,
    with_user_text,
)

log = logging.getLogger("recast.serve")
_TRUE = {"1", "true", "yes", "on"}
_FIRST_EVENT_LIMIT = 1 << 16  # bytes buffered to find a stream's first event (return_refined)


@dataclass(frozen=True)
class Outcome:
    """What the proxy did with one request's query."""

    verdict: str
    refined: bool = False
    fallback: bool = False
    refine_ms: float = 0.0
    refiner: str = ""
    x: str | None = None
    x_prime: str | None = None
    sent: str | None = None
    reason: str = ""

    def headers(self) -> dict[str, str]:
        out = {
            "x-recast-refined": str(self.refined).lower(),
            "x-recast-verdict": self.verdict,
            "x-recast-fallback": str(self.fallback).lower(),
            "x-recast-refine-ms": f"{self.refine_ms:.1f}",
        }
        if self.refiner:
            out["x-recast-refiner"] = _header_safe(self.refiner)
        return out

    def body(self) -> dict[str, Any]:
        return {
            "x": self.x,
            "x_prime": self.x_prime,
            "sent": self.sent,
            "verdict": self.verdict,
            "fallback": self.fallback,
            "reason": self.reason,
        }


def _header_safe(text: str) -> str:
    return text.encode("ascii", "replace").decode().replace("\r", " ").replace("\n", " ")


class _Scripted:
    """A plain `refine_batch` seen as a Champion that never reloads."""

    def __init__(self, fn: RefineBatch, label: str) -> None:
        self.fn, self.label, self.reloads = fn, label, 0

    def refine_batch(self, xs: list[str]) -> tuple[str, Sequence[RefinedLike]]:
        return self.label, self.fn(xs)

    def check(self, force: bool = False) -> bool:
        return False


class Redactor:
    """Replaces every secret the proxy holds or was sent with '***' in text that is logged or
    returned (an upstream may quote the key it rejected)."""

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        self.secrets = [s for s in secrets if s]

    def __call__(self, text: str, extra: Sequence[str] = ()) -> str:
        for secret in sorted([*self.secrets, *(e for e in extra if e)], key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


def _bearer(value: str | None) -> str:
    if not value:
        return ""
    return value.split(None, 1)[1] if value.lower().startswith("bearer ") else value


def _error(status: int, message: str, kind: str, headers: dict[str, str]) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(
    params: ServeParams,
    upstream: Upstream,
    refiner: Champion | RefineBatch,
    *,
    handle_sighup: bool = False,
) -> FastAPI:
    """The proxy over `upstream`. `refiner` is the Champion (reloadable) or any
    `refine_batch(xs) -> [Refined]` (tests script one). SIGHUP forces a reload when
    `handle_sighup` (the CLI; it needs the main thread)."""
    key = None
    if params.api_key_env:
        key = os.environ.get(params.api_key_env)
        if not key:
            raise ConfigError(
                f"serve.api_key_env names {params.api_key_env}, which is not set: export the "
                "upstream's key there, or set serve.api_key_env to null"
            )
    champion: Any = refiner if isinstance(refiner, Champion) else _Scripted(refiner, "injected")
    metrics = Metrics()
    redact = Redactor([key] if key else [])

    def on_batch(size: int, seconds: float) -> None:
        metrics.batch_size.observe(size)

    def refine_batch(xs: list[str]) -> list[tuple[str, RefinedLike]]:
        label, results = champion.refine_batch(xs)
        return [(label, r) for r in results]

    batcher: MicroBatcher[str, tuple[str, RefinedLike]] = MicroBatcher(
        refine_batch,
        max_batch=params.max_batch,
        window_s=params.batch_window_ms / 1000,
        max_queue=params.max_queue,
        name="refiner",
        on_batch=on_batch,
    )

    async def reload(force: bool) -> None:
        # On a thread: loading weights takes seconds and must not stall requests.
        if await asyncio.to_thread(champion.check, force):
            metrics.reloads.inc()

    async def reload_every(interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await reload(False)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        tasks: list[asyncio.Task[None]] = []
        loop = asyncio.get_running_loop()
        if params.reload_interval_s > 0 and isinstance(champion, Champion):
            tasks.append(asyncio.create_task(reload_every(params.reload_interval_s)))
        sighup = handle_sighup and threading.current_thread() is threading.main_thread()
        if sighup:
            loop.add_signal_handler(
                signal.SIGHUP, lambda: tasks.append(loop.create_task(reload(True)))
            )
        log.info("recast serve: refiner %s, upstream %s", champion.label, upstream.name)
        try:
            yield
        finally:
            if sighup:
                loop.remove_signal_handler(signal.SIGHUP)
            for task in tasks:
                task.cancel()
            await asyncio.to_thread(batcher.stop)
            await upstream.aclose()

    app = FastAPI(title="recast serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.champion, app.state.metrics, app.state.batcher = champion, metrics, batcher

    def upstream_headers(request: Request) -> dict[str, str]:
        # Nothing of the client's request headers reaches the upstream but what is configured:
        # the proxy's own key, or the client's Authorization when forward_authorization is set.
        if key:
            return {"authorization": f"Bearer {key}"}
        if params.forward_authorization and "authorization" in request.headers:
            return {"authorization": request.headers["authorization"]}
        return {}

    async def refine(text: str, skip: bool) -> Outcome:
        if skip:
            return Outcome("skipped", x=text, sent=text)
        start = time.perf_counter()
        metrics.queue_depth.set(batcher.depth)
        try:
            label, r = await batcher.submit(text)
        except QueueFull:
            metrics.queue_full.inc()
            raise
        except Exception as e:
            # Fail open: the user still gets an answer to the query as they wrote it.
            log.error("refinement failed, sending the query unchanged: %s", redact(str(e)))
            ms = (time.perf_counter() - start) * 1000
            return Outcome("error", fallback=True, refine_ms=ms, x=text, sent=text, reason=str(e))
        seconds = time.perf_counter() - start
        metrics.refine_seconds.observe(seconds)
        if r.fallback:
            metrics.fallbacks.inc()
        return Outcome(
            str(r.verdict),
            refined=not r.fallback and r.sent != r.x,
            fallback=r.fallback,
            refine_ms=seconds * 1000,
            refiner=label,
            x=r.x,
            x_prime=r.x_prime,
            sent=r.sent,
            reason=r.reason,
        )

    def finish(endpoint: str, status: int, outcome: Outcome | None, started: float) -> None:
        metrics.requests.labels(endpoint, str(status)).inc()
        if outcome is not None:
            metrics.refinements.labels(outcome.verdict).inc()
        log.info(
            "%s %d verdict=%s refined=%s refine_ms=%.0f total_ms=%.0f",
            endpoint,
            status,
            outcome.verdict if outcome else "-",
            str(outcome.refined).lower() if outcome else "-",
            outcome.refine_ms if outcome else 0,
            (time.perf_counter() - started) * 1000,
        )

    def upstream_failed(e: UpstreamError, headers: dict[str, str], client_key: str) -> Response:
        metrics.upstream_errors.labels(e.kind.removeprefix("upstream_")).inc()
        message = redact(e.message, [client_key])
        log.warning("upstream failed (%d, %s): %s", e.status, e.kind, message)
        body = json.loads(redact(json.dumps(e.body), [client_key]))
        return JSONResponse(body, status_code=e.status, headers={**headers, **e.headers})

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        started = time.perf_counter()
        endpoint = "chat/completions"
        client_key = _bearer(request.headers.get("authorization"))
        try:
            body = await request.json()
        except ValueError:
            finish(endpoint, 400, None, started)
            return _error(400, "the request body is not JSON", "invalid_request_error", {})
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            finish(endpoint, 400, None, started)
            return _error(
                400, "expected a JSON object with a 'messages' list", "invalid_request_error", {}
            )
        found = last_user_text(body["messages"])
        skip = request.headers.get("x-recast-skip", "").lower() in _TRUE
        want_refined = (
            params.return_refined
            or request.headers.get("x-recast-return-refined", "").lower() in _TRUE
        )
        if found is None:
            outcome = Outcome("none")
        else:
            try:
                outcome = await refine(found[1], skip)
            except QueueFull as e:
                finish(endpoint, 503, None, started)
                return _error(503, str(e), "overloaded", {"retry-after": "1"})
            if outcome.sent is not None and outcome.sent != found[1]:
                messages = with_user_text(body["messages"], found[0], outcome.sent)
                body = {**body, "messages": messages}
        headers = outcome.headers()
        t_up = time.perf_counter()
        stream = bool(body.get("stream"))
        try:
            if stream:
                opened = await upstream.open_stream(body, upstream_headers(request))
            else:
                answer = await upstream.chat(body, upstream_headers(request))
        except UpstreamError as e:
            finish(endpoint, e.status, outcome, started)
            return upstream_failed(e, headers, client_key)
        metrics.upstream_seconds.labels(str(stream).lower()).observe(time.perf_counter() - t_up)
        finish(endpoint, 200, outcome, started)
        if not stream:
            if want_refined:
                answer = {**answer, "recast": outcome.body()}
            return JSONResponse(answer, headers=headers)
        chunks = opened.chunks()
        if want_refined:
            chunks = _tag_first_event(chunks, outcome.body())
        return StreamingResponse(
            _closing(chunks, opened),
            media_type="text/event-stream",
            headers={**headers, "cache-control": "no-cache"},
        )

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        started = time.perf_counter()
        try:
            data = await upstream.models(upstream_headers(request))
        except UpstreamError as e:
            finish("models", e.status, None, started)
            return upstream_failed(e, {}, _bearer(request.headers.get("authorization")))
        finish("models", 200, None, started)
        return JSONResponse(data)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "refiner": champion.label,
            "reloads": champion.reloads,
            "upstream": upstream.name,
            "queue": batcher.depth,
        }

    @app.get("/metrics")
    async def prometheus() -> Response:
        metrics.queue_depth.set(batcher.depth)
        return Response(metrics.render(), media_type=metrics.content_type)

    return app


async def _closing(chunks: AsyncIterator[bytes], opened: Stream) -> AsyncIterator[bytes]:
    """Pass the chunks through; close the upstream stream however the client leaves."""
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        await opened.aclose()


async def _tag_first_event(
    chunks: AsyncIterator[bytes], recast: dict[str, Any]
) -> AsyncIterator[bytes]:
    """Add `"recast": {...}` to the first data event of an SSE stream; the rest passes as is."""
    buffer = b""
    tagged = False
    async for chunk in chunks:
        if tagged:
            yield chunk
            continue
        buffer += chunk
        end = buffer.find(b"\n\n")
        if end < 0 and len(buffer) < _FIRST_EVENT_LIMIT:
            continue
        tagged = True
        if end < 0:  # no event boundary in sight: give up tagging, lose nothing
            yield buffer
            continue
        event, rest = buffer[:end], buffer[end:]
        yield _with_field(event, recast) + rest
    if not tagged and buffer:
        yield buffer


def _with_field(event: bytes, recast: dict[str, Any]) -> bytes:
    lines = event.decode("utf-8", "replace").split("\n")
    for i, line in enumerate(lines):
        if line.startswith("data:"):
            try:
                data = json.loads(line[5:].strip())
            except ValueError:
                return event
            if not isinstance(data, dict):
                return event
            lines[i] = "data: " + json.dumps({**data, "recast": recast}, ensure_ascii=False)
            return "\n".join(lines).encode()
    return event
