"""HttpGenerator against real scripted HTTP servers on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from recast.config import GeneratorParams
from recast.errors import GeneratorError
from recast.generator.base import Generator, Sampling
from recast.generator.http import HttpGenerator

# A behaviour gets (path, json body) and returns (status, raw body text); it may sleep.
Behaviour = Callable[[str, Any], tuple[int, str]]


def chat_ok(path: str, body: Any) -> tuple[int, str]:
    content = f"echo:{body['messages'][0]['content']}"
    return 200, json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]})


class FakeServer:
    """A ThreadingHTTPServer whose replies come from a queue of behaviours, then a default."""

    def __init__(self, default: Behaviour = chat_ok) -> None:
        self.default = default
        self.queue: list[Behaviour] = []
        self.requests: list[tuple[str, Any, dict[str, str]]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with fake.lock:
                    fake.requests.append((self.path, json.loads(raw), dict(self.headers)))
                    behaviour = fake.queue.pop(0) if fake.queue else fake.default
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    status, text = behaviour(self.path, json.loads(raw))
                finally:
                    with fake.lock:
                        fake.in_flight -= 1
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that timed out closes the socket under a sleeping handler

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def make_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., FakeServer]]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    servers: list[FakeServer] = []

    def make(default: Behaviour = chat_ok) -> FakeServer:
        servers.append(FakeServer(default))
        return servers[-1]

    yield make
    for s in servers:
        s.stop()


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def params(endpoints: list[str], **kw: Any) -> GeneratorParams:
    base: dict[str, Any] = dict(
        backend="http", model="m", timeout_s=2.0, max_retries=2, backoff_s=0.01, concurrency=4
    )
    return GeneratorParams(endpoints=endpoints, **(base | kw))


def status(code: int, text: str = '{"error": "boom"}') -> Behaviour:
    return lambda path, body: (code, text)


def wrap(text: str) -> str:
    return f"<u>{text}</u><a>"


def echo_reply(tokens: list[str], logprobs: list[float | None]) -> str:
    offsets = [sum(len(t) for t in tokens[:k]) for k in range(len(tokens))]
    lp = {"tokens": tokens, "token_logprobs": logprobs, "text_offset": offsets}
    return json.dumps({"choices": [{"text": "".join(tokens), "logprobs": lp}]})


def test_generate_in_order_over_two_endpoints(make_server: Callable[..., FakeServer]) -> None:
    a, b = make_server(), make_server()
    prompts = [f"p{i}" for i in range(6)]
    sampling = Sampling(max_new_tokens=7, temperature=0.5, top_p=0.9, top_k=5, seed=3)
    with HttpGenerator(params([a.url, b.url])) as gen:
        assert isinstance(gen, Generator)
        assert gen.generate(prompts, sampling) == [f"echo:{p}" for p in prompts]
    assert len(a.requests) == 3 and len(b.requests) == 3
    path, body, _ = a.requests[0]
    assert path == "/v1/chat/completions"
    assert body["model"] == "m" and body["max_tokens"] == 7 and body["temperature"] == 0.5
    assert body["top_p"] == 0.9 and body["top_k"] == 5 and body["seed"] == 3


def test_generate_omits_unset_top_k_and_seed_and_sends_token(
    make_server: Callable[..., FakeServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECAST_TEST_KEY", "sekret")
    a = make_server()
    with HttpGenerator(params([a.url], api_key_env="RECAST_TEST_KEY")) as gen:
        gen.generate(["x"], Sampling(top_k=0, seed=None))
    _, body, headers = a.requests[0]
    assert "top_k" not in body and "seed" not in body
    assert headers["Authorization"] == "Bearer sekret"


def test_score_echo(make_server: Callable[..., FakeServer]) -> None:
    # Sample 0: clean boundary. Sample 1: "</u><a>H" straddles the boundary and counts as target.
    replies = {
        wrap("hello") + "Hi there": echo_reply(
            ["<u>", "hello", "</u><a>", "Hi", " there", "!"], [None, -1.0, -0.5, -0.25, -0.75, -3.0]
        ),
        wrap("q") + "Hi": echo_reply(["<u>q", "</u><a>H", "i", "."], [None, -0.3, -0.1, -9.0]),
    }

    def completions(path: str, body: Any) -> tuple[int, str]:
        assert path == "/v1/completions"
        assert body["echo"] is True and body["max_tokens"] == 1 and body["logprobs"] >= 1
        return 200, replies[body["prompt"]]

    srv = make_server(completions)
    with HttpGenerator(params([srv.url]), render_chat=wrap) as gen:
        ce = gen.score(["hello", "q"], ["Hi there", "Hi"])
    assert ce == pytest.approx([(0.25 + 0.75) / 2, (0.3 + 0.1) / 2])


def test_score_prompt_logprobs(make_server: Callable[..., FakeServer]) -> None:
    def entry(tok: int, lp: float) -> dict[str, Any]:
        return {str(tok): {"logprob": lp, "rank": 1, "decoded_token": f"t{tok}"}}

    def behaviour(path: str, body: Any) -> tuple[int, str]:
        if path == "/tokenize":
            assert body == {"model": "m", "prompt": wrap("q")}
            return 200, json.dumps({"count": 4, "max_model_len": 99, "tokens": [1, 2, 3, 4]})
        assert path == "/v1/completions"
        assert body["prompt"] == wrap("q") + "ab" and body["echo"] is False
        assert body["prompt_logprobs"] == 0
        entries = [None, entry(2, -9.0), entry(3, -9.0), entry(4, -9.0)]
        entries += [entry(5, -0.2), entry(6, -0.6)]
        return 200, json.dumps({"choices": [{"text": "x", "prompt_logprobs": entries}]})

    srv = make_server(behaviour)
    p = params([srv.url], score_mode="prompt_logprobs")
    with HttpGenerator(p, render_chat=wrap) as gen:
        assert gen.score(["q"], ["ab"]) == [pytest.approx(0.4)]


def test_retries_500_then_succeeds(make_server: Callable[..., FakeServer]) -> None:
    srv = make_server()
    srv.queue = [status(500), status(503)]
    with HttpGenerator(params([srv.url], max_retries=2)) as gen:
        assert gen.generate(["x"], Sampling()) == ["echo:x"]
    assert len(srv.requests) == 3


def test_always_500_raises(make_server: Callable[..., FakeServer]) -> None:
    srv = make_server(status(500, '{"error": "engine dead"}'))
    with HttpGenerator(params([srv.url], max_retries=3)) as gen, pytest.raises(GeneratorError) as e:
        gen.generate(["x"], Sampling())
    msg = str(e.value)
    assert "HTTP 500" in msg and "after 4 attempts" in msg and "engine dead" in msg
    assert f"{srv.url}/chat/completions" in msg
    assert len(srv.requests) == 4


def test_4xx_not_retried(make_server: Callable[..., FakeServer]) -> None:
    srv = make_server(status(400, '{"error": "bad model"}'))
    with HttpGenerator(params([srv.url])) as gen, pytest.raises(GeneratorError, match="HTTP 400"):
        gen.generate(["x"], Sampling())
    assert len(srv.requests) == 1


def test_429_is_retried(make_server: Callable[..., FakeServer]) -> None:
    srv = make_server()
    srv.queue = [status(429)]
    with HttpGenerator(params([srv.url])) as gen:
        assert gen.generate(["x"], Sampling()) == ["echo:x"]
    assert len(srv.requests) == 2


def test_timeout_raises(make_server: Callable[..., FakeServer]) -> None:
    def slow(path: str, body: Any) -> tuple[int, str]:
        time.sleep(0.6)
        return chat_ok(path, body)

    srv = make_server(slow)
    p = params([srv.url], timeout_s=0.2, max_retries=1)
    with HttpGenerator(p) as gen, pytest.raises(GeneratorError) as e:
        gen.generate(["x"], Sampling())
    assert "timeout" in str(e.value) and "after 2 attempts" in str(e.value)


def test_truncated_json_retried_then_raises(make_server: Callable[..., FakeServer]) -> None:
    srv = make_server(status(200, '{"choices": [{"mess'))
    with HttpGenerator(params([srv.url], max_retries=2)) as gen, pytest.raises(GeneratorError) as e:
        gen.generate(["x"], Sampling())
    assert "not valid JSON" in str(e.value) and '{"choices": [{"mess' in str(e.value)
    assert len(srv.requests) == 3


def test_missing_fields_retried(make_server: Callable[..., FakeServer]) -> None:
    srv = make_server()
    srv.queue = [status(200, '{"choices": []}')]
    with HttpGenerator(params([srv.url])) as gen:
        assert gen.generate(["x"], Sampling()) == ["echo:x"]
    assert len(srv.requests) == 2


def test_dead_endpoint_is_skipped(make_server: Callable[..., FakeServer]) -> None:
    live = make_server()
    with HttpGenerator(params([dead_url(), live.url])) as gen:
        out = gen.generate([f"p{i}" for i in range(5)], Sampling())
    assert out == [f"echo:p{i}" for i in range(5)]
    assert len(live.requests) == 5


def test_only_dead_endpoint_raises() -> None:
    url = dead_url()
    with HttpGenerator(params([url], max_retries=1)) as gen, pytest.raises(GeneratorError) as e:
        gen.generate(["x"], Sampling())
    assert "connection failed" in str(e.value) and url in str(e.value)


def test_none_logprob_in_target_raises(make_server: Callable[..., FakeServer]) -> None:
    good = echo_reply(["a", "b"], [None, -1.0])
    bad = echo_reply(["a", "b", "c"], [None, -1.0, None])

    srv = make_server(lambda path, body: (200, good if body["prompt"] == "ab" else bad))
    with HttpGenerator(params([srv.url])) as gen, pytest.raises(GeneratorError, match="sample 1"):
        gen.score(["a", "a"], ["b", "bc"])
    assert len(srv.requests) == 2  # a bad logprob is a model answer, not retried


def test_empty_endpoints_rejected() -> None:
    with pytest.raises(GeneratorError, match="endpoints"):
        HttpGenerator(params([]))


def test_concurrency(make_server: Callable[..., FakeServer]) -> None:
    def slow(path: str, body: Any) -> tuple[int, str]:
        time.sleep(0.2)
        return chat_ok(path, body)

    srv = make_server(slow)
    with HttpGenerator(params([srv.url], concurrency=4)) as gen:
        out = gen.generate([f"p{i}" for i in range(8)], Sampling())
    assert out == [f"echo:p{i}" for i in range(8)]
    # requests overlapped (more than one in flight), and never more than `concurrency`; counted
    # by the server, not timed, so a busy machine cannot fail it
    assert 2 <= srv.max_in_flight <= 4
