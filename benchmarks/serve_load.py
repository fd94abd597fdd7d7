"""`recast serve` under load: the proxy against the same upstream asked directly, in one run.

A bounded load (64 requests, 16 at a time, loopback only) of real queries (the bundled Vicuna,
BPO-test and Self-Instruct evaluation prompts) goes first straight to the upstream, then through
the proxy; for each: p50 / p95 latency and requests/s, and for the proxy the refinement's share of
the latency (x-recast-refine-ms over the request's time). Then the refiner alone: 16 queries
refined through the micro-batcher with batches of up to 16 against batches of 1 (one at a time),
same queries, for serve's refiner (the template's shared head run once) and, as the baseline,
a plain Refiner of the same weights (`--refine-only`: this part alone).

The upstream is served on 127.0.0.1 by this script: `local` is the local generator (generator.*
of params.yaml) behind an OpenAI-style endpoint, `fake` an echo server answering after a fixed
delay (to see the proxy's own overhead), or pass any …/v1 URL on loopback.

    python benchmarks/serve_load.py --checkpoint smollm2-135m-instruct [--upstream local]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from recast.config import ServeParams, load_params
from recast.refiner.model import Refiner
from recast.serve.app import create_app
from recast.serve.batcher import throughput
from recast.serve.champion import default_refine
from recast.serve.run import is_loopback, make_champion, serve_in_thread
from recast.serve.upstream import HttpUpstream, LocalUpstream, Upstream, UpstreamError

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "recast" / "data" / "samples"


def real_queries() -> list[str]:
    """Short standalone prompts of the bundled evaluation sets (no Dolly: it needs context)."""
    root = SAMPLES / "eval-samples"
    vicuna = [json.loads(line)["text"] for line in (root / "vicuna_eval.jsonl").open()]
    bpo = [r["prompt"] for r in json.loads((root / "bpo_test.json").read_text())]
    self_instruct = [
        r["instruction"]
        for r in json.loads((root / "self_instruct_eval.json").read_text())
        if not r.get("context")
    ]
    return [q for q in vicuna + bpo + self_instruct if len(q) < 300]


def upstream_app(upstream: Upstream) -> FastAPI:
    """An OpenAI-style endpoint over an in-process upstream (what vLLM would be)."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        try:
            return JSONResponse(await upstream.chat(await request.json(), {}))
        except UpstreamError as e:
            return JSONResponse(e.body, status_code=e.status)

    return app


def fake_app(latency_s: float) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        body = await request.json()
        await asyncio.sleep(latency_s)
        message = {"role": "assistant", "content": body["messages"][-1]["content"]}
        return {
            "id": "fake",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        }

    return app


@dataclasses.dataclass
class Load:
    latencies: list[float]
    refine_ms: list[float]
    wall_s: float
    failures: int

    def row(self, name: str) -> str:
        ok = sorted(self.latencies)
        p50 = statistics.median(ok)
        p95 = ok[min(len(ok) - 1, round(0.95 * (len(ok) - 1)))]
        share = (
            f"{statistics.mean(self.refine_ms) / 1000 / statistics.mean(ok):6.1%}"
            if self.refine_ms
            else "     -"
        )
        return (
            f"{name:<8} {p50:8.2f} {p95:8.2f} {len(ok) / self.wall_s:8.2f} {share}"
            f" {self.failures:5d}"
        )


async def load(url: str, queries: list[str], n: int, concurrency: int, max_tokens: int) -> Load:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    refine_ms: list[float] = []
    failures = 0
    async with openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=600) as c:

        async def one(query: str) -> None:
            nonlocal failures
            async with gate:
                start = time.perf_counter()
                try:
                    raw = await c.chat.completions.with_raw_response.create(
                        model="served",
                        messages=[{"role": "user", "content": query}],
                        max_tokens=max_tokens,
                        temperature=0,
                    )
                except openai.APIError as e:
                    failures += 1
                    print(f"  failed: {e}")
                    return
                latencies.append(time.perf_counter() - start)
                if "x-recast-refine-ms" in raw.headers:
                    refine_ms.append(float(raw.headers["x-recast-refine-ms"]))

        start = time.perf_counter()
        cycle: Iterator[str] = itertools.cycle(queries)
        await asyncio.gather(*(one(next(cycle)) for _ in range(n)))
    return Load(latencies, refine_ms, time.perf_counter() - start, failures)


@contextlib.contextmanager
def served_upstream(args: argparse.Namespace, p: Any) -> Iterator[str]:
    """The upstream for this run, served here on loopback (or a loopback URL given)."""
    if args.upstream not in ("local", "fake"):
        host = httpx.URL(args.upstream).host
        if not is_loopback(host):
            raise SystemExit("the load stays on loopback: pass a 127.0.0.1 upstream URL")
        yield args.upstream
        return
    if args.upstream == "fake":
        with serve_in_thread(fake_app(args.fake_latency_ms / 1000)) as url:
            yield url
        return
    from recast.generator import Sampling, make_generator

    local = LocalUpstream(
        make_generator(p.generator),
        p.generator.model,
        Sampling(**dataclasses.asdict(p.sampling)),
        max_batch=p.generator.batch_size,
        window_s=p.serve.batch_window_ms / 1000,
        max_queue=256,
        timeout_s=600.0,
    )
    try:
        with serve_in_thread(upstream_app(local)) as url:
            yield url
    finally:
        local.batcher.stop()


def proxy_load(args: argparse.Namespace, p: Any, champion: Any, queries: list[str]) -> None:
    """The load straight to the upstream, then through the proxy: latency and requests/s."""
    with served_upstream(args, p) as upstream_url:
        settings = ServeParams(
            max_batch=args.max_batch,
            batch_window_ms=p.serve.batch_window_ms,
            max_queue=256,
            upstream_timeout_s=600.0,
            reload_interval_s=0.0,
        )
        proxy = create_app(settings, HttpUpstream(upstream_url, 600.0), champion)
        with serve_in_thread(proxy) as proxy_url:
            warm = [queries[0]]
            asyncio.run(load(upstream_url, warm, 1, 1, args.max_tokens))  # first-call costs
            asyncio.run(load(proxy_url, warm, 1, 1, args.max_tokens))
            direct = asyncio.run(
                load(upstream_url, queries, args.requests, args.concurrency, args.max_tokens)
            )
            proxied = asyncio.run(
                load(proxy_url, queries, args.requests, args.concurrency, args.max_tokens)
            )
            sizes = proxy.state.metrics.batch_size.collect()[0].samples
    count = next(s.value for s in sizes if s.name.endswith("_count"))
    total = next(s.value for s in sizes if s.name.endswith("_sum"))

    print(f"\nupstream {args.upstream}, answers of at most {args.max_tokens} tokens")
    print(f"{'':<8} {'p50 s':>8} {'p95 s':>8} {'req/s':>8} {'refine':>6} {'fail':>5}")
    print(direct.row("direct"))
    print(proxied.row("proxy"))
    print(f"proxy refinement batches: {count:.0f}, mean size {total / max(count, 1):.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", default="local", help="local | fake | a loopback …/v1 URL")
    ap.add_argument("--checkpoint", default=None, help="refiner (default: serve.checkpoint)")
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64, help="answer length")
    ap.add_argument("--max-batch", type=int, default=16, help="serve.max_batch of the proxy")
    ap.add_argument("--refine-queries", type=int, default=16, help="batched vs one-at-a-time")
    ap.add_argument("--fake-latency-ms", type=float, default=200.0)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--refine-only", action="store_true", help="only the refinement part")
    args = ap.parse_args()
    if args.requests > 256 or args.concurrency > 64:
        ap.error("bounded load: at most 256 requests, 64 at a time")

    p = load_params(args.params)
    if args.checkpoint:
        p.serve = dataclasses.replace(p.serve, checkpoint=args.checkpoint)
    p.serve = dataclasses.replace(p.serve, max_batch=args.max_batch)
    queries = real_queries()
    print(f"{len(queries)} real queries; {args.requests} requests, {args.concurrency} at a time")

    t = time.perf_counter()
    champion = make_champion(p)
    print(f"refiner {champion.label} loaded in {time.perf_counter() - t:.1f} s")

    if not args.refine_only:
        proxy_load(args, p, champion, queries)

    qs = queries[: args.refine_queries]
    rp = p.refiner
    refine_with = default_refine(
        rp.max_refined_tokens, rp.guard, rp.check_encoder, args.max_batch, p.redraw
    )
    # the baseline: the same weights as a plain Refiner, which prefills every query's whole
    # chat(P(x)) where serve's SharedHeadRefiner runs the shared head once
    plain = Refiner.from_params(champion.label, rp)

    def refine_batch(xs: list[str]) -> Any:
        return champion.refine_batch(xs)[1]

    def refine_plain(xs: list[str]) -> Any:
        return refine_with(plain, xs)

    print(f"\nrefinement of {len(qs)} queries (queries/s; micro-batches of up to {len(qs)})")
    print(f"{'refiner':<28} {'batched':>8} {'one at a time':>14} {'ratio':>6}")
    rates = {}
    for name, fn in (("plain Refiner", refine_plain), ("serve's (shared head)", refine_batch)):
        asyncio.run(throughput(fn, qs[:2], 2))  # first-call costs
        batched = asyncio.run(throughput(fn, qs, args.refine_queries))
        single = asyncio.run(throughput(fn, qs, 1))
        rates[name] = (batched, single)
        print(f"{name:<28} {batched:>8.2f} {single:>14.2f} {batched / single:>5.1f}x")
    (pb, ps), (sb, ss) = rates.values()
    print(
        f"serve's refiner against the plain one: batched {sb / pb:.1f}x, one at a time "
        f"{ss / ps:.1f}x; serve batched against plain one at a time {sb / ps:.1f}x"
    )


if __name__ == "__main__":
    main()
