"""Prometheus metrics: one registry per application, the metric definitions, and ``/metrics``.

Label children are cached per (method, route, status): ``.labels()`` on every request costs more than the
observation itself. Methods outside the standard set are folded into ``OTHER`` to bound the label space.
With several workers (``PROMETHEUS_MULTIPROC_DIR`` set by ``__main__``), each worker writes its samples to
that directory and ``/metrics`` adds them up, so a scrape sees the whole process group whichever worker
answers it; ``process_*`` metrics then come once per running worker, labelled with its ``pid`` (and the
per-process ``python_gc_*`` are left out). When ``APP_METRICS_KEYS`` is set, ``/metrics`` answers only
requests bearing one of those keys.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from starlette.responses import Response

from .credentials import HashedKey, bearer_token, matching_key
from .errors import Unauthorized

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# prometheus-client's file names: <type>[_<gauge mode>]_<pid>.db. Nothing else in the directory is ours.
SAMPLE_FILE = re.compile(r"(?:counter|histogram|summary|gauge_[a-z]+)_(?P<pid>[0-9]+)\.db")
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="metrics"'}


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
        # prometheus-client chose file-backed values at import if the variable was set: follow the same rule.
        directory = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
        self.multiprocess_dir = Path(directory) if directory else None
        self._scraped = every_worker(self.multiprocess_dir) if self.multiprocess_dir else self.registry
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

    def pool_in_use(self) -> Gauge:
        """The gauge of database connections checked out of the pool, for the pool's events to move.

        Moved on checkout and checkin rather than read at scrape time: with several workers, each one's
        count must be written where the worker answering the scrape can add it up.
        """
        return Gauge(
            "db_pool_connections_in_use",
            "Database connections checked out of the pool.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )

    def database_failures(self) -> Counter:
        """Database failures answered with 503 or 504, by kind: unavailable, pool_exhausted, timeout, busy."""
        return Counter(
            "db_failures_total",
            "Database failures answered with 503 or 504, by kind.",
            ["kind"],
            registry=self.registry,
        )

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
        if self.multiprocess_dir is not None:
            forget_stopped_workers(self.multiprocess_dir)
        return generate_latest(self._scraped)


def every_worker(directory: Path) -> CollectorRegistry:
    """What a scrape reads with several workers: every worker's samples from the shared directory, and
    each running worker's process metrics (the process collector sees only the process it runs in)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    registry.register(PLATFORM_COLLECTOR)
    registry.register(WorkerProcesses(directory))
    return registry


def worker_pids(directory: Path) -> set[int]:
    """The processes that wrote samples into a multiprocess directory."""
    pids = set()
    for path in directory.iterdir():
        match = SAMPLE_FILE.fullmatch(path.name)
        if match:
            pids.add(int(match["pid"]))
    return pids


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process took the pid over: not one of our workers
        return False
    return True


def forget_stopped_workers(directory: Path) -> None:
    """Drop the live gauges (in-flight requests, breaker states, pool use) of workers that stopped, so a
    crashed or replaced worker's last values do not count forever; its counters keep counting."""
    for pid in worker_pids(directory):
        if not is_running(pid):
            # Another worker answering a scrape at the same moment may have removed the files first.
            with contextlib.suppress(FileNotFoundError):
                multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def clear_samples(directory: Path) -> None:
    """Remove the sample files of an earlier run (and only those), so no stale value is added up."""
    for path in directory.iterdir():
        if SAMPLE_FILE.fullmatch(path.name):
            path.unlink(missing_ok=True)


class WorkerProcesses(Collector):
    """``process_*`` metrics (CPU, memory, file descriptors) of every running worker, labelled by pid."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._collectors: dict[int, ProcessCollector] = {}

    def collect(self) -> Iterable[Metric]:
        pids = sorted(pid for pid in worker_pids(self.directory) if is_running(pid))
        self._collectors = {
            pid: self._collectors.get(pid) or ProcessCollector(pid=functools.partial(str, pid), registry=None)
            for pid in pids
        }
        families: dict[str, Metric] = {}
        for pid, collector in self._collectors.items():
            for family in collector.collect():
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
        return families.values()


class MetricsKeyAuth:
    """A FastAPI dependency for ``/metrics``: a configured metrics key as a Bearer token, or 401.

    The metrics keys are a set of their own: no other credential opens ``/metrics``.
    """

    def __init__(self, keys: tuple[HashedKey, ...]) -> None:
        self.keys = keys

    async def __call__(self, request: Request) -> None:
        token = bearer_token(request.headers.get("authorization", ""))
        if token is None:
            raise Unauthorized("A metrics key is required (Authorization: Bearer).", headers=CHALLENGE)
        if matching_key(token, self.keys) is None:
            raise Unauthorized("The metrics key is not valid.", headers=CHALLENGE)


def metrics_router(metrics: Metrics, *, keys: tuple[HashedKey, ...] = ()) -> APIRouter:
    """``/metrics``: open to whoever reaches the port, or, with ``keys``, to bearers of one of them."""
    router = APIRouter(include_in_schema=False)
    guard = [Depends(MetricsKeyAuth(keys))] if keys else []

    @router.get("/metrics", dependencies=guard)
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router
