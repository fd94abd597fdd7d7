"""`recast serve` through the official openai client, on real sockets (uvicorn on 127.0.0.1).

Most tests put the proxy in front of a fake upstream (a loopback FastAPI app that echoes, streams,
fails with 500, hangs or sends truncated JSON) with a scripted refiner whose verdicts come from
the real rewrite check; the tests at the end load real weights: a tiny random refiner through
the real refine path, and the local generator in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from conftest import ROOT, SAMPLES
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from recast.config import ServeParams
from recast.refiner.check import check
from recast.serve.app import create_app
from recast.serve.champion import Champion, alias_version
from recast.serve.run import serve_in_thread
from recast.serve.upstream import HttpUpstream, sse

pytestmark = pytest.mark.timeout(180)

# Real user queries: the Vicuna evaluation set bundled with the samples.
QUERIES = [
    json.loads(line)["text"]
    for line in (SAMPLES / "eval-samples" / "vicuna_eval.jsonl").read_text().splitlines()
]
SECRET = "sk-test-3f9a1c0d7e5b2468ace0"


# -- a scripted refiner (the real check decides the verdict) --------------------------------------


@dataclass(frozen=True)
class Scripted:
    """Shaped like recast.refiner.refine.Refined."""

    x: str
    x_prime: str
    verdict: str
    reason: str
    fallback: bool

    @property
    def sent(self) -> str:
        return self.x if self.fallback else self.x_prime


def rewrite(x: str) -> str:
    return f"{x} Please answer in detail, with concrete steps."


# An x' that answers QUERIES[0] instead of rewriting it: the guard must fall back to x.
ANSWERING = {
    QUERIES[0]: "Here are some tips to improve your time management: make a schedule every "
    "morning, prioritize the important tasks, avoid distractions, and take regular short "
    "breaks during work."
}


@dataclass
class ScriptedRefiner:
    """refine_batch(xs): records batch sizes; can be slowed down or held on an event."""

    delay_s: float = 0.0
    hold: threading.Event | None = None
    batches: list[int] = field(default_factory=list)

    def __call__(self, xs: list[str]) -> list[Scripted]:
        self.batches.append(len(xs))
        if self.hold is not None:
            assert self.hold.wait(30), "test never released the refiner"
        time.sleep(self.delay_s)
        out = []
        for x in xs:
            x_prime = ANSWERING.get(x, rewrite(x))
            verdict = check(x, x_prime)
            out.append(Scripted(x, x_prime, verdict.verdict, verdict.reason, verdict.harmful))
        return out


# -- the fake upstream -----------------------------------------------------------------------------


def completion(content: str, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
    }


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    return sse({**body, "choices": [choice]})


@dataclass
class Seen:
    """What the fake upstream received."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)


def fake_upstream(seen: Seen) -> FastAPI:
    """Behaviour by the request's model: ok (echoes the last user message), stream, fail (500),
    hang, truncated (cut JSON), stream-hang (one chunk, then silence), auth-echo (a 500 that
    quotes the key it got, as some APIs do)."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.json()
        seen.bodies.append(body)
        auth = request.headers.get("authorization")
        seen.auth.append(auth)
        model = body["model"]
        last = body["messages"][-1]["content"]
        if model == "fail":
            error = {"message": "the GPU caught fire", "type": "server_error"}
            return JSONResponse({"error": error}, status_code=500)
        if model == "auth-echo":
            return JSONResponse({"error": {"message": f"bad key {auth}"}}, status_code=500)
        if model == "hang":
            await asyncio.sleep(30)
        if model == "truncated":
            return Response(
                b'{"id": "chatcmpl-1", "choices": [{"mess', media_type="application/json"
            )
        if body.get("stream"):

            async def events() -> Any:
                yield chunk({"role": "assistant", "content": ""})
                if model == "stream-hang":
                    await asyncio.sleep(30)
                for piece in ("echo: ", last):
                    yield chunk({"content": piece})
                yield chunk({}, "stop")
                yield sse("[DONE]")

            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse(completion(f"echo: {last}", model))

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        entry = {"id": "fake-model", "object": "model", "created": 0, "owned_by": "test"}
        return {"object": "list", "data": [entry]}

    return app


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[str, Seen]]:
    seen = Seen()
    with serve_in_thread(fake_upstream(seen)) as url:
        yield url, seen


@contextlib.contextmanager
def proxy(
    upstream_url: str,
    refiner: Callable[[list[str]], list[Any]] | Champion | None = None,
    **settings: Any,
) -> Iterator[openai.OpenAI]:
    params = ServeParams(**{"upstream_timeout_s": 10.0, "batch_window_ms": 5.0, **settings})
    app = create_app(
        params, HttpUpstream(upstream_url, params.upstream_timeout_s), refiner or ScriptedRefiner()
    )
    with serve_in_thread(app) as url:
        yield openai.OpenAI(base_url=url, api_key="client-key", max_retries=0, timeout=30)


def root(client: openai.OpenAI) -> str:
    """The proxy's address without /v1 (health and metrics live at the root)."""
    return str(client.base_url).rstrip("/").removesuffix("/v1")


def ask(query: str, system: str | None = None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": query}]


# -- answers, streaming, headers -------------------------------------------------------------------


def test_refines_the_last_user_message_and_says_so(upstream: tuple[str, Seen]) -> None:
    url, seen = upstream
    x = QUERIES[1]
    with proxy(url) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="ok",
            messages=[*ask(QUERIES[2], "Be brief."), {"role": "assistant", "content": "ok"},
                      {"role": "user", "content": x}],
            extra_headers={"x-recast-return-refined": "1"},
        )  # fmt: skip
        answer = raw.parse()
    sent = seen.bodies[-1]["messages"]
    assert sent[-1]["content"] == rewrite(x)  # the upstream saw x'
    assert sent[:3] == [*ask(QUERIES[2], "Be brief."), {"role": "assistant", "content": "ok"}]
    assert answer.choices[0].message.content == f"echo: {rewrite(x)}"
    assert raw.headers["x-recast-refined"] == "true"
    assert raw.headers["x-recast-verdict"] == "rewrite"
    assert raw.headers["x-recast-fallback"] == "false"
    assert float(raw.headers["x-recast-refine-ms"]) >= 0
    assert answer.model_extra["recast"]["x"] == x
    assert answer.model_extra["recast"]["x_prime"] == rewrite(x)


def test_refined_text_is_opt_in(upstream: tuple[str, Seen]) -> None:
    with proxy(upstream[0]) as client:
        answer = client.chat.completions.create(model="ok", messages=ask(QUERIES[1]))
    assert "recast" not in (answer.model_extra or {})


def test_streams_through(upstream: tuple[str, Seen]) -> None:
    url, seen = upstream
    x = QUERIES[3]
    with (
        proxy(url) as client,
        client.chat.completions.with_streaming_response.create(
            model="stream", messages=ask(x), stream=True,
            extra_headers={"x-recast-return-refined": "true"},
        ) as response,
    ):  # fmt: skip
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-recast-verdict"] == "rewrite"
        chunks = list(response.parse())
    assert seen.bodies[-1]["stream"] is True
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"echo: {rewrite(x)}"
    assert chunks[0].model_extra["recast"]["sent"] == rewrite(x)  # tagged first chunk
    assert "recast" not in (chunks[1].model_extra or {})
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_guard_fallback_shows_in_headers(upstream: tuple[str, Seen]) -> None:
    url, seen = upstream
    x = QUERIES[0]  # the scripted refiner answers it
    with proxy(url) as client:
        for stream in (False, True):
            with client.chat.completions.with_streaming_response.create(
                model="stream" if stream else "ok", messages=ask(x), stream=stream
            ) as response:
                response.read()
            assert response.headers["x-recast-verdict"] == "answers"
            assert response.headers["x-recast-fallback"] == "true"
            assert response.headers["x-recast-refined"] == "false"
            assert seen.bodies[-1]["messages"][-1]["content"] == x  # x itself went upstream
        text = httpx.get(f"{root(client)}/metrics", timeout=10).text
    assert "recast_serve_fallbacks_total 2.0" in text
    assert 'recast_serve_refinements_total{verdict="answers"} 2.0' in text


def test_skip_header_sends_the_query_unchanged(upstream: tuple[str, Seen]) -> None:
    url, seen = upstream
    refiner = ScriptedRefiner()
    with proxy(url, refiner) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="ok", messages=ask(QUERIES[4]), extra_headers={"x-recast-skip": "1"}
        )
    assert raw.headers["x-recast-verdict"] == "skipped"
    assert raw.headers["x-recast-refined"] == "false"
    assert seen.bodies[-1]["messages"][-1]["content"] == QUERIES[4]
    assert refiner.batches == []  # the refiner never ran


# -- upstream failures -----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_500_is_502_with_its_message(upstream: tuple[str, Seen], stream: bool) -> None:
    with proxy(upstream[0]) as client, pytest.raises(openai.APIStatusError) as error:
        client.chat.completions.create(model="fail", messages=ask(QUERIES[5]), stream=stream)
    assert error.value.status_code == 502
    assert "answered 500: the GPU caught fire" in error.value.message
    assert error.value.response.headers["x-recast-verdict"] == "rewrite"


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_silence_is_504(upstream: tuple[str, Seen], stream: bool) -> None:
    start = time.monotonic()
    with (
        proxy(upstream[0], upstream_timeout_s=0.5) as client,
        pytest.raises(openai.APIStatusError) as error,
    ):
        client.chat.completions.create(model="hang", messages=ask(QUERIES[5]), stream=stream)
    assert error.value.status_code == 504
    assert "did not answer" in error.value.message
    assert time.monotonic() - start < 10


def test_silence_mid_stream_ends_with_an_error_event(upstream: tuple[str, Seen]) -> None:
    with proxy(upstream[0], upstream_timeout_s=0.5) as client:
        stream = client.chat.completions.create(
            model="stream-hang", messages=ask(QUERIES[6]), stream=True
        )
        with pytest.raises(openai.APIError, match="did not answer the next chunk"):
            for _ in stream:
                pass


def test_truncated_json_is_502(upstream: tuple[str, Seen]) -> None:
    with proxy(upstream[0]) as client, pytest.raises(openai.APIStatusError) as error:
        client.chat.completions.create(model="truncated", messages=ask(QUERIES[7]))
    assert error.value.status_code == 502
    assert "malformed JSON" in error.value.message


def test_unreachable_upstream_is_502() -> None:
    with proxy("http://127.0.0.1:9/v1") as client, pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="ok", messages=ask(QUERIES[7]))
    assert e.value.status_code == 502
    assert "cannot reach upstream" in e.value.message


# -- keys ------------------------------------------------------------------------------------------


def test_key_goes_upstream_but_never_into_logs(
    upstream: tuple[str, Seen],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    url, seen = upstream
    monkeypatch.setenv("RECAST_TEST_UPSTREAM_KEY", SECRET)
    caplog.set_level(logging.DEBUG)  # everything any logger says, httpx and uvicorn included
    with proxy(url, api_key_env="RECAST_TEST_UPSTREAM_KEY") as client:
        client.chat.completions.create(model="ok", messages=ask(QUERIES[8]))
        assert seen.auth[-1] == f"Bearer {SECRET}"  # the proxy's key, not the client's
        with pytest.raises(openai.APIStatusError) as error:
            client.chat.completions.create(model="auth-echo", messages=ask(QUERIES[8]))
    assert error.value.status_code == 502
    assert "bad key Bearer ***" in error.value.message  # the upstream quoted it: redacted
    assert SECRET not in error.value.response.text
    out, err = capfd.readouterr()
    assert "upstream failed" in caplog.text  # the logs were captured, and the error is in them
    for text in (caplog.text, out, err):
        assert SECRET not in text


def test_client_authorization_is_forwarded_only_when_configured(
    upstream: tuple[str, Seen],
) -> None:
    url, seen = upstream
    with proxy(url) as client:
        client.chat.completions.create(model="ok", messages=ask(QUERIES[9]))
    assert seen.auth[-1] is None
    with proxy(url, forward_authorization=True) as client:
        client.chat.completions.create(model="ok", messages=ask(QUERIES[9]))
    assert seen.auth[-1] == "Bearer client-key"


# -- models, health, metrics -----------------------------------------------------------------------


def test_models_healthz_and_metrics(upstream: tuple[str, Seen]) -> None:
    with proxy(upstream[0]) as client:
        assert [m.id for m in client.models.list()] == ["fake-model"]
        client.chat.completions.create(model="ok", messages=ask(QUERIES[2]))
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="fail", messages=ask(QUERIES[2]))
        health = httpx.get(f"{root(client)}/healthz", timeout=10).json()
        metrics = httpx.get(f"{root(client)}/metrics", timeout=10)
    assert health["status"] == "ok" and health["refiner"] == "injected"
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'recast_serve_requests_total{endpoint="chat/completions",status="200"} 1.0' in text
    assert 'recast_serve_requests_total{endpoint="chat/completions",status="502"} 1.0' in text
    assert 'recast_serve_requests_total{endpoint="models",status="200"} 1.0' in text
    assert 'recast_serve_upstream_errors_total{kind="error"} 1.0' in text
    assert "recast_serve_refine_seconds_count 2.0" in text
    assert 'recast_serve_upstream_seconds_count{stream="false"} 1.0' in text


# -- batching, back-pressure, failures of the refiner ----------------------------------------------


async def _concurrently(url: str, n: int, **kwargs: Any) -> list[Any]:
    async with openai.AsyncOpenAI(base_url=url, api_key="k", max_retries=0, timeout=60) as client:
        calls = [
            client.chat.completions.with_raw_response.create(
                model="ok", messages=ask(QUERIES[i % len(QUERIES)]), **kwargs
            )
            for i in range(n)
        ]
        return await asyncio.gather(*calls, return_exceptions=True)


def test_concurrent_refinements_are_micro_batched(upstream: tuple[str, Seen]) -> None:
    refiner = ScriptedRefiner(delay_s=0.2)  # a batch costs the same whatever its size
    with proxy(upstream[0], refiner, max_batch=8, batch_window_ms=50) as client:
        results = asyncio.run(_concurrently(str(client.base_url), 16))
    assert all(not isinstance(r, BaseException) for r in results), results
    assert sum(refiner.batches) == 16
    assert max(refiner.batches) > 1 and max(refiner.batches) <= 8
    assert len(refiner.batches) <= 6  # 16 queries did not run one at a time


def test_full_queue_answers_503(upstream: tuple[str, Seen]) -> None:
    hold = threading.Event()
    refiner = ScriptedRefiner(hold=hold)
    with proxy(upstream[0], refiner, max_batch=1, max_queue=2, batch_window_ms=0) as client:

        async def until(ready: Callable[[], bool]) -> None:
            for _ in range(600):
                if ready():
                    return
                await asyncio.sleep(0.05)
            raise AssertionError("the proxy never reached the state the test waits for")

        async def scenario() -> list[Any]:
            url = str(client.base_url)
            # One query in the refiner (held), then two waiting: the queue is full.
            first = asyncio.ensure_future(_concurrently(url, 1))
            await until(lambda: refiner.batches == [1])
            waiting = asyncio.ensure_future(_concurrently(url, 2))
            await until(lambda: httpx.get(f"{root(client)}/healthz").json()["queue"] == 2)
            async with openai.AsyncOpenAI(
                base_url=url, api_key="k", max_retries=0, timeout=30
            ) as c:
                with pytest.raises(openai.APIStatusError) as error:
                    await c.chat.completions.create(model="ok", messages=ask(QUERIES[1]))
            hold.set()
            return [error.value, *(await first), *(await waiting)]

        refused, *served = asyncio.run(scenario())
    assert refused.status_code == 503
    assert "queue is full (2 waiting)" in refused.message
    assert all(r.http_response.status_code == 200 for r in served)


def test_refiner_failure_sends_the_query_unchanged(upstream: tuple[str, Seen]) -> None:
    url, seen = upstream

    def broken(xs: list[str]) -> list[Any]:
        raise RuntimeError("refiner prompt is 2000 tokens, over the limit")

    with proxy(url, broken) as client:
        raw = client.chat.completions.with_raw_response.create(model="ok", messages=ask(QUERIES[3]))
    assert raw.http_response.status_code == 200
    assert raw.headers["x-recast-verdict"] == "error"
    assert seen.bodies[-1]["messages"][-1]["content"] == QUERIES[3]


# -- champion reload -------------------------------------------------------------------------------


def test_alias_move_reloads_without_dropping_requests(upstream: tuple[str, Seen]) -> None:
    version = {"now": "1"}
    loaded: list[str] = []

    def load(label: str) -> str:
        time.sleep(0.5)  # a reload takes a while; requests keep being served meanwhile
        loaded.append(label)
        return label

    def refine_with(refiner: str, xs: list[str]) -> list[Scripted]:
        return [Scripted(x, f"{x} ({refiner})", "rewrite", "", False) for x in xs]

    champion = Champion(
        "models:/recast-refiner@champion", load, refine_with, lambda _: version["now"]
    )
    with proxy(upstream[0], champion, reload_interval_s=0.2) as client:
        labels, deadline = [], time.monotonic() + 30
        version["now"] = "2"  # promote a new champion while requests flow
        while time.monotonic() < deadline:
            raw = client.chat.completions.with_raw_response.create(
                model="ok", messages=ask(QUERIES[4])
            )
            assert raw.http_response.status_code == 200
            labels.append(raw.headers["x-recast-refiner"])
            if labels[-1].endswith("/2"):
                break
        metrics = httpx.get(f"{root(client)}/metrics", timeout=10).text
    assert loaded == ["models:/recast-refiner/1", "models:/recast-refiner/2"]
    assert labels[0] == "models:/recast-refiner/1" and labels[-1] == "models:/recast-refiner/2"
    assert "recast_serve_refiner_reloads_total 1.0" in metrics


def test_alias_version_reads_the_registry(tmp_path: Path) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns.db'}")
    client = mlflow.MlflowClient()
    client.create_registered_model("recast-refiner")
    for _ in range(2):
        client.create_model_version("recast-refiner", source=str(tmp_path))
    client.set_registered_model_alias("recast-refiner", "champion", "1")
    assert alias_version("models:/recast-refiner@champion") == "1"
    client.set_registered_model_alias("recast-refiner", "champion", "2")
    assert alias_version("models:/recast-refiner@champion") == "2"
    assert alias_version(str(tmp_path)) is None


# -- real weights: a tiny refiner through the real refine path, the local generator ---------------


def local_params(refiner: str, generator: str, **serve: Any) -> Any:
    from recast.config import load_params

    p = load_params(None)
    p.serve = ServeParams(upstream="local", checkpoint=refiner, **serve)
    p.generator.model = generator
    p.sampling.max_new_tokens = 16
    p.refiner.max_refined_tokens = 16
    p.refiner.check_encoder = None  # the lexical check: no MiniLM load in these tests
    return p


def ask_three(client: openai.OpenAI) -> list[tuple[Any, Any]]:
    """Three real queries, the second one streamed: (headers, answer text, recast body)."""
    out = []
    for i, x in enumerate(QUERIES[:3]):
        stream = i == 1
        with client.chat.completions.with_streaming_response.create(
            model="local", messages=ask(x), stream=stream,
            extra_headers={"x-recast-return-refined": "1"},
        ) as response:  # fmt: skip
            parsed = response.parse()
            if stream:
                chunks = list(parsed)
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                recast = chunks[0].model_extra["recast"]
            else:
                text, recast = parsed.choices[0].message.content, parsed.model_extra["recast"]
        out.append((response.headers, text, recast))
    return out


def check_outcomes(results: list[tuple[Any, Any]]) -> None:
    from recast.refiner.check import HARMFUL

    for (headers, text, recast), x in zip(results, QUERIES, strict=False):
        assert isinstance(text, str) and text.strip()  # an answer arrived
        assert recast["x"] == x
        assert headers["x-recast-verdict"] == recast["verdict"]
        fallback = recast["verdict"] in HARMFUL or not recast["x_prime"].strip()
        assert (
            headers["x-recast-fallback"] == str(fallback).lower() == str(recast["fallback"]).lower()
        )
        assert recast["sent"] == (x if fallback else recast["x_prime"])
        assert headers["x-recast-refined"] == str(recast["sent"] != x).lower()


def test_tiny_refiner_and_tiny_local_generator_end_to_end(tiny_lm: str) -> None:
    from recast.serve.run import build

    app = build(local_params(tiny_lm, tiny_lm))
    with serve_in_thread(app) as url:
        client = openai.OpenAI(base_url=url, api_key="k", max_retries=0, timeout=120)
        assert [m.id for m in client.models.list()] == [tiny_lm]
        check_outcomes(ask_three(client))
        health = httpx.get(f"{root(client)}/healthz", timeout=10).json()
    assert health["refiner"] == tiny_lm and health["upstream"] == f"local:{tiny_lm}"


def test_tiny_refiner_in_front_of_smollm2(tiny_lm: str, smollm2: str) -> None:
    from recast.serve.run import build

    app = build(local_params(tiny_lm, smollm2))
    with serve_in_thread(app) as url:
        client = openai.OpenAI(base_url=url, api_key="k", max_retries=0, timeout=300)
        check_outcomes(ask_three(client))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_services_entry_serves_reloads_on_sighup_and_stops(
    upstream: tuple[str, Seen], tiny_lm: str, minilm: str, tmp_path: Path
) -> None:
    """scripts/services.sh serve-start runs `recast serve` by pid; SIGHUP reloads the refiner
    while it keeps answering; serve-stop ends it."""
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        "RECAST_SERVICES_DIR": str(tmp_path),
        "RECAST_SERVE_PORT": str(port),
        "RECAST_SERVE_UPSTREAM": upstream[0],
        "RECAST_SERVE_CHECKPOINT": tiny_lm,
    }
    script = [str(ROOT / "scripts" / "services.sh")]
    started = subprocess.run(
        [*script, "serve-start"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    pid = int((tmp_path / "recast-serve.pid").read_text())
    try:
        assert started.returncode == 0, started.stderr + (tmp_path / "recast-serve.log").read_text()
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0, timeout=120
        )
        first = client.chat.completions.with_raw_response.create(
            model="ok", messages=ask(QUERIES[5])
        )
        assert first.headers["x-recast-refiner"] == tiny_lm
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + 120
        while httpx.get(f"{root(client)}/healthz", timeout=10).json()["reloads"] < 1:
            # answered all along, by the old refiner and then the new one
            raw = client.chat.completions.with_raw_response.create(
                model="ok", messages=ask(QUERIES[6])
            )
            assert raw.http_response.status_code == 200
            assert time.monotonic() < deadline, "no reload within 120 s of SIGHUP"
        assert "refiner reloaded" in (tmp_path / "recast-serve.log").read_text()
    finally:
        stopped = subprocess.run(
            [*script, "serve-stop"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
    assert f"stopped recast-serve (pid {pid})" in stopped.stdout
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
