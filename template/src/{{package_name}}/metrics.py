"""Prometheus metrics: one registry per application, the metric definitions, and ``/metrics``.

Label children are cached per (method, route, status): ``.labels()`` on every request costs more than the
observation itself. Methods outside the standard set are folded into ``OTHER`` to bound the label space.
With several workers (``PROMETHEUS_MULTIPROC_DIR`` set by ``__main__``), each worker writes its samples to
that directory and ``/metrics`` aggregates them, so a scrape sees the whole process group.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.responses import Response

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The service's metric families, registered in their own registry."""

    def __init__(
        self,
        *,
        service: str,
        version: str,
        commit: str = "unknown",
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time from request start to response end, by method, route template and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "http_requests_in_progress",
            "HTTP requests being served now, by method.",
            ["method"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.rate_limit_rejections = Counter(
            "rate_limit_rejections_total",
            "Requests refused with 429, by the limit that refused them (client or global).",
            ["scope"],
            registry=self.registry,
        )
        self.rate_limit_storage_failures = Counter(
            "rate_limit_storage_failures_total",
            "Rate-limit checks the storage could not answer, by what happened to the request.",
            ["outcome"],
            registry=self.registry,
        )
        self.retries = Counter(
            "outbound_retries_total",
            "Retries of outbound calls, by retry policy.",
            ["policy"],
            registry=self.registry,
        )
        self.breaker_state = Gauge(
            "circuit_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ["name"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.breaker_transitions = Counter(
            "circuit_breaker_transitions_total",
            "Circuit breaker state changes.",
            ["name", "from_state", "to_state"],
            registry=self.registry,
        )
        self.throttle_wait = Histogram(
            "outbound_throttle_wait_seconds",
            "Time outbound calls waited for the upstream's rate limit, by upstream.",
            ["upstream"],
            buckets=(0.0, 0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self.outbound_latency = Histogram(
            "outbound_request_duration_seconds",
            "Outbound HTTP call latency (each attempt), by upstream and outcome.",
            ["upstream", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        build_info = Gauge(
            "app_build_info",
            "Always 1; the labels say which service, version and commit run.",
            ["service", "version", "commit"],
            registry=self.registry,
            multiprocess_mode="max",
        )
        build_info.labels(service=service, version=version, commit=commit).set(1)
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._in_progress_children: dict[str, Any] = {}

    def track_pool(self, in_use: Callable[[], float]) -> None:
        """Export a connection pool's checked-out connections, read at scrape time."""
        gauge = Gauge(
            "db_pool_connections_in_use",
            "Database connections checked out of the pool.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        gauge.set_function(in_use)

    @staticmethod
    def method_label(method: str) -> str:
        return method if method in KNOWN_METHODS else "OTHER"

    def in_progress_for(self, method: str) -> Any:
        child = self._in_progress_children.get(method)
        if child is None:
            child = self._in_progress_children[method] = self.in_progress.labels(method)
        return child

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            labels = (method, route, str(status))
            children = (self.requests.labels(*labels), self.latency.labels(*labels))
            self._request_children[key] = children
        counter, histogram = children
        counter.inc()
        histogram.observe(seconds)

    def render(self) -> bytes:
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)


def metrics_router(metrics: Metrics) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router
