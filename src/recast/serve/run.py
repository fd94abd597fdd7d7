"""`recast serve`: build the proxy from params (refiner, upstream) and run it under uvicorn."""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from recast.config import Params
from recast.errors import ConfigError
from recast.serve.app import create_app
from recast.serve.champion import Champion, default_refine
from recast.serve.upstream import HttpUpstream, LocalUpstream, Upstream

log = logging.getLogger("recast.serve")


def refiner_spec(p: Params) -> str:
    return p.serve.checkpoint or f"models:/{p.registry.name}@champion"


def make_champion(p: Params) -> Champion:
    """The refiner (loaded now, so the server is ready when it listens) and its reload rule."""
    from recast.serve.shared_head import SharedHeadRefiner
    from recast.tracking import use

    spec = refiner_spec(p)
    if spec.startswith("models:/"):
        use(p.tracking)  # a registry URI is looked up in this tracking server's registry

    def load(label: str) -> Any:
        # the template's head runs once, not once per query (recast.serve.shared_head)
        return SharedHeadRefiner.from_params(label, p.refiner)

    rp = p.refiner
    refine_with = default_refine(
        rp.max_refined_tokens, rp.guard, rp.check_encoder, p.serve.max_batch,
        p.redraw,
    )  # fmt: skip
    return Champion(spec, load, refine_with)


def make_upstream(p: Params) -> Upstream:
    s = p.serve
    if s.upstream == "local":
        from recast.generator import Sampling, make_generator

        return LocalUpstream(
            make_generator(p.generator),
            p.generator.model,
            Sampling(**dataclasses.asdict(p.sampling)),
            max_batch=p.generator.batch_size,
            window_s=s.batch_window_ms / 1000,
            max_queue=s.max_queue,
            timeout_s=s.upstream_timeout_s,
        )
    if not s.upstream.startswith(("http://", "https://")):
        raise ConfigError(
            f"serve.upstream must be 'local' or an http(s) base URL such as "
            f"http://127.0.0.1:8000/v1, got {s.upstream!r}"
        )
    return HttpUpstream(s.upstream, s.upstream_timeout_s)


def build(p: Params, *, handle_sighup: bool = False) -> Any:
    """The FastAPI app of `recast serve` for these params (weights loaded on return)."""
    if p.serve.max_batch < 1 or p.serve.max_queue < 1:
        raise ConfigError("serve.max_batch and serve.max_queue must be at least 1")
    champion = make_champion(p)
    return create_app(p.serve, make_upstream(p), champion, handle_sighup=handle_sighup)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(p: Params) -> None:
    """Run the proxy until interrupted (SIGHUP reloads the refiner)."""
    import uvicorn

    if not logging.getLogger("recast.serve").handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s recast.serve: %(message)s")
        )
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    if not is_loopback(p.serve.host):
        log.warning(
            "binding %s: the proxy (and the upstream key it holds) is reachable from the network",
            p.serve.host,
        )
    app = build(p, handle_sighup=True)
    uvicorn.run(app, host=p.serve.host, port=p.serve.port, log_level="info")


@contextlib.contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", timeout_s: float = 60.0) -> Iterator[str]:
    """Run `app` under uvicorn on a free port of `host` in a background thread; yields the base
    URL (…/v1). For tests and benchmarks: the real server, sockets and all."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the server on {host}:{port} did not start in {timeout_s} s")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout_s)
        sock.close()
