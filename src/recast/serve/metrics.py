"""Prometheus metrics of the proxy, in a registry of its own (one per app, so that tests and
benchmarks that build several apps in one process do not share counters)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Refinement takes tens of ms on a GPU and seconds on a CPU; answers up to minutes.
_REFINE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_UPSTREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "recast_serve_requests", "HTTP requests answered", ["endpoint", "status"], registry=r
        )
        self.refinements = Counter(
            "recast_serve_refinements",
            "Chat requests by what the refiner did (a check verdict, or skipped / none / error)",
            ["verdict"],
            registry=r,
        )
        self.fallbacks = Counter(
            "recast_serve_fallbacks",
            "Refinements the guard rejected: the original query was sent unchanged",
            registry=r,
        )
        self.refine_seconds = Histogram(
            "recast_serve_refine_seconds",
            "Time from a query's arrival at the refiner to its x' (queueing and batching included)",
            buckets=_REFINE_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "recast_serve_refine_batch_size",
            "Queries per batched refinement",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "recast_serve_upstream_seconds",
            "Upstream latency: to the whole answer, or to the first chunk when streaming",
            ["stream"],
            buckets=_UPSTREAM_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "recast_serve_upstream_errors",
            "Upstream failures by kind (timeout, unreachable, error, malformed, client_error)",
            ["kind"],
            registry=r,
        )
        self.queue_full = Counter(
            "recast_serve_queue_full", "Requests refused with 503: refiner queue full", registry=r
        )
        self.queue_depth = Gauge(
            "recast_serve_refine_queue_depth", "Queries waiting for the refiner", registry=r
        )
        self.reloads = Counter(
            "recast_serve_refiner_reloads", "Times a new champion refiner was loaded", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
