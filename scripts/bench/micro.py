"""Micro-costs of the generated service's own building blocks, per request or per call (in microseconds).

Runs in the bench venv with the rendered service importable; the service is configured from the
environment exactly like the server run (high limits, JSON logs) and wired by its own ``create_app``, so
the limiter, breaker and middleware measured here are the ones the app really uses.

    python micro.py --package acme_service --part core  --out core.json
    python micro.py --package acme_service --part redis --out redis.json   # the redis variant on PYTHONPATH

Each cost is the median over repeats of (time of N calls) / N; a layer's cost is measured against the same
call without it, interleaved per repeat, so loop and await overhead cancel out. Hand-written: timeit does
not drive coroutines, and pyperf's process-per-run model is too slow for the `make bench` budget.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvloop
from bare_app import create_bare_app

AsyncCall = Callable[[], Awaitable[Any]]
INFO_PATH = "/api/v1/info"


def http_scope(path: str = INFO_PATH, client_port: int = 50000) -> dict[str, Any]:
    """An ASGI scope as uvicorn builds it for the load generator's request."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", client_port),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"accept", b"application/json"),
            (b"accept-encoding", b"gzip, deflate"),
            (b"user-agent", b"rampart-bench/1"),
        ],
        "state": {},
    }


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: dict[str, Any]) -> None:
    return None


async def trivial_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})


class Timer:
    def __init__(self, seconds_per_repeat: float, repeats: int) -> None:
        self.seconds = seconds_per_repeat
        self.repeats = repeats

    async def _batch(self, call: AsyncCall, count: int) -> float:
        started = time.perf_counter_ns()
        for _ in range(count):
            await call()
        return (time.perf_counter_ns() - started) / count / 1000  # us per call

    async def _count_for(self, call: AsyncCall) -> int:
        count = 16
        while True:
            per_call = await self._batch(call, count)
            if per_call * count >= 20_000 or count >= 1 << 22:  # 20 ms: enough to extrapolate
                return max(16, int(self.seconds * 1e6 / per_call))
            count *= 4

    async def cost(self, call: AsyncCall, baseline: AsyncCall | None = None) -> dict[str, Any]:
        """us per call of ``call`` (minus ``baseline`` when given), median over interleaved repeats."""
        count = await self._count_for(call)
        totals, bases = [], []
        for _ in range(self.repeats):
            if baseline is not None:
                bases.append(await self._batch(baseline, count))
            totals.append(await self._batch(call, count))
        result: dict[str, Any] = {"calls_per_repeat": count, "samples_us": totals}
        if baseline is None:
            result["us"] = statistics.median(totals)
        else:
            result["baseline_samples_us"] = bases
            result["total_us"] = statistics.median(totals)
            result["baseline_us"] = statistics.median(bases)
            result["us"] = statistics.median(total - base for total, base in zip(totals, bases, strict=True))
        return result

    def cost_sync(self, call: Callable[[], Any]) -> dict[str, Any]:
        count = 16
        while True:
            started = time.perf_counter_ns()
            for _ in range(count):
                call()
            elapsed = time.perf_counter_ns() - started
            if elapsed >= 20_000_000:
                break
            count *= 4
        count = max(16, int(self.seconds * 1e9 / (elapsed / count)))
        samples = []
        for _ in range(self.repeats):
            started = time.perf_counter_ns()
            for _ in range(count):
                call()
            samples.append((time.perf_counter_ns() - started) / count / 1000)
        return {"calls_per_repeat": count, "samples_us": samples, "us": statistics.median(samples)}


def asgi_call(asgi_app: Any, path: str = INFO_PATH, app: Any = None) -> AsyncCall:
    """One request through ``asgi_app``; ``app`` goes in the scope when calling below the application."""

    async def call() -> None:
        scope = http_scope(path)
        if app is not None:
            scope["app"] = app
        await asgi_app(scope, receive, send)

    return call


class FakeRoute:
    """What FastAPI puts in ``scope["route"]``: the edge layer reads its template."""

    path_format = INFO_PATH


ROUTE = FakeRoute()


async def core(package: str, timer: Timer) -> dict[str, Any]:
    app_module = importlib.import_module(f"{package}.app")
    settings_module = importlib.import_module(f"{package}.settings")
    logging_module = importlib.import_module(f"{package}.logging")
    retry_module = importlib.import_module(f"{package}.resilience.retry")
    from asgi_correlation_id import correlation_id

    request_id = importlib.import_module(f"{package}.middleware.request_id")

    settings = settings_module.Settings()
    app = app_module.create_app(settings)
    devnull = open(os.devnull, "w")  # noqa: SIM115  # lives as long as the process
    logging_module.configure_logging(settings, stream=devnull)  # the app's pipeline, written nowhere
    results: dict[str, Any] = {}

    inbound = app.state.inbound_limiter
    scope = http_scope()
    decision = await inbound.check(scope)
    if not decision.allowed or decision.storage_failed:
        raise RuntimeError(f"the memory limiter refused the bench's request: {decision}")
    results["ratelimit_check_memory"] = await timer.cost(lambda: inbound.check(scope))

    async def ok() -> int:
        return 1

    breaker = app.state.upstream_breaker
    results["breaker_call_success"] = await timer.cost(lambda: breaker.call(ok), baseline=ok)
    policy = retry_module.RetryPolicy(
        "upstream",
        max_attempts=settings.retry_max_attempts,
        max_delay=settings.retry_max_delay_seconds,
        initial_backoff=settings.retry_initial_backoff_seconds,
        max_backoff=settings.retry_max_backoff_seconds,
    )
    results["retry_call_success"] = await timer.cost(lambda: policy.call(ok, idempotent=True), baseline=ok)

    logger = logging_module.get_logger("access")
    token = correlation_id.set(request_id.new_request_id())
    results["log_line_json"] = timer.cost_sync(
        lambda: logger.info(
            "request",
            method="GET",
            route=INFO_PATH,
            path=INFO_PATH,
            status=200,
            duration_ms=0.123,
            client_ip="127.0.0.1",
        )
    )
    # The access log's own line (the edge layer writes one per request), through the same pipeline.
    access_log = importlib.import_module(f"{package}.middleware.access_log").AccessLog()
    results["access_log_line"] = timer.cost_sync(lambda: access_log(scope, INFO_PATH, 200, 0.000123))
    correlation_id.reset(token)

    # Each layer of the app's real middleware stack (as Starlette builds it) over a trivial inner app.
    bare = create_bare_app()
    inner = with_route(trivial_app)
    stack = app.build_middleware_stack()
    layers = []
    layer = stack
    while type(layer).__name__ != "ExceptionMiddleware" and hasattr(layer, "app"):
        layers.append(layer)
        layer = layer.app
    framework = layer  # ExceptionMiddleware -> (AsyncExitStackMiddleware) -> router -> endpoint
    results["stack"] = {}
    for number, current in enumerate(layers):
        original, current.app = current.app, inner
        name = type(current).__name__
        results["stack"][f"{number}:{name}"] = await timer.cost(asgi_call(current), baseline=asgi_call(inner))
        current.app = original
    metrics = app.state.metrics

    def record_request_metrics() -> None:  # what the edge layer records for every request
        in_progress = metrics.in_progress_for("GET")
        in_progress.inc()
        in_progress.dec()
        metrics.observe_request("GET", INFO_PATH, 200, 0.000123)

    results["metrics_per_request"] = timer.cost_sync(record_request_metrics)
    bare_stack = bare.build_middleware_stack()
    bare_framework = bare_stack.app  # under ServerErrorMiddleware: the bare app has no other middleware
    results["routing_and_endpoint"] = await timer.cost(
        asgi_call(framework, app=app), baseline=asgi_call(bare_framework, app=bare)
    )
    results["app_in_process"] = await timer.cost(asgi_call(app), baseline=asgi_call(bare))
    return results


def with_route(inner: Any) -> Any:
    """``inner`` behind what the router would have done: ``scope["route"]`` set to the info route."""

    async def app_with_route(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["route"] = ROUTE
        await inner(scope, receive, send)

    return app_with_route


async def redis_part(package: str, timer: Timer) -> dict[str, Any]:
    app_module = importlib.import_module(f"{package}.app")
    settings_module = importlib.import_module(f"{package}.settings")
    cache = importlib.import_module(f"{package}.cache")
    logging_module = importlib.import_module(f"{package}.logging")
    settings = settings_module.Settings()
    client = cache.make_redis(settings)
    try:
        await asyncio.wait_for(client.ping(), 2)
    except Exception as exc:
        return {"skipped": f"Redis unreachable at {settings.redis_url}: {exc!r}"}
    app = app_module.create_app(settings)
    logging_module.configure_logging(settings, stream=open(os.devnull, "w"))  # noqa: SIM115
    inbound = app.state.inbound_limiter
    scope = http_scope()
    decision = await inbound.check(scope)
    if not decision.allowed or decision.storage_failed:
        return {"skipped": f"the Redis limiter did not allow the bench's request: {decision}"}

    from redis.asyncio.connection import AbstractConnection

    sent = 0
    original = AbstractConnection.send_packed_command

    async def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        nonlocal sent
        sent += 1
        await original(self, *args, **kwargs)

    AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    for _ in range(50):
        await inbound.check(scope)
    round_trips = sent / 50
    AbstractConnection.send_packed_command = original  # type: ignore[method-assign]

    ping = await timer.cost(client.ping)
    check = await timer.cost(lambda: inbound.check(scope))
    # Interleave once more so a drift in Redis latency hits both alike.
    ping_again = await timer.cost(client.ping)
    check_again = await timer.cost(lambda: inbound.check(scope))
    result = {
        "redis_url": settings.redis_url,
        "round_trips_per_check": round_trips,
        "limits": {"per_client": settings.rate_limit_per_client, "global": settings.rate_limit_global},
        "ping": ping,
        "ratelimit_check_redis": check,
        "ping_us": statistics.median(ping["samples_us"] + ping_again["samples_us"]),
        "check_us": statistics.median(check["samples_us"] + check_again["samples_us"]),
    }
    async for key in client.scan_iter(match=f"{settings.service_name}:limits*"):
        await client.delete(key)
    await client.aclose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--package", required=True)
    parser.add_argument("--part", choices=("core", "redis"), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=0.2, help="per repeat")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    timer = Timer(args.seconds, args.repeats)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115  # start-up log lines of create_app
    part = core if args.part == "core" else redis_part
    result = uvloop.run(part(args.package, timer))
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
