"""Health endpoints and the registry of dependency checks behind them.

- ``/health/live``: 200 while the process serves requests; it checks nothing else, so a slow dependency
  never gets a healthy process restarted.
- ``/health/startup``: 200 once start-up has finished.
- ``/health/ready``: 200 only when every critical check passes within its timeout, else 503 naming the
  failing checks; it also turns 503 as soon as shutdown starts, so load balancers drain the instance.
- ``/health``: every component's status and latency, for humans and dashboards.

Results are cached for a short time, and concurrent probes share one run, so probes cannot hammer a
struggling dependency.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from fastapi import APIRouter
from fastapi.responses import JSONResponse

Probe = Callable[[], Awaitable[object]]
Status = Literal["ok", "fail"]
logger = structlog.get_logger(__name__)
# Set from the server's SIGTERM handler (__main__.py), before in-flight requests drain: readiness must
# turn 503 at once so load balancers stop sending traffic, not when the lifespan finally shuts down.
_shutdown_requested = False


def begin_shutdown() -> None:
    global _shutdown_requested  # noqa: PLW0603 - one process, one shutdown
    _shutdown_requested = True


@dataclass(frozen=True)
class HealthCheck:
    """A named probe. A non-critical check shows in ``/health`` but never fails readiness."""

    name: str
    probe: Probe
    timeout: float | None = None
    critical: bool = True


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    latency_ms: float
    critical: bool
    error: str | None = None
    # What failed, for the log only: /health shows the error's type, never its message.
    cause: str | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "status": self.status,
            "latency_ms": self.latency_ms,
            "critical": self.critical,
        }
        if self.error is not None:
            result["error"] = self.error
        return result


@dataclass(frozen=True)
class HealthReport:
    results: tuple[CheckResult, ...] = ()
    failing: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        return not self.failing


class HealthRegistry:
    """The checks readiness depends on; the data and cache layers register theirs at start-up."""

    def __init__(
        self,
        *,
        timeout: float,
        cache_seconds: float,
        reminder_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self.reminder_seconds = reminder_seconds
        self.clock = clock
        self.started_at = clock()
        self.started = False
        self.stopping = False
        self._checks: dict[str, HealthCheck] = {}
        self._details: dict[str, Callable[[], object]] = {}
        self._cached: HealthReport | None = None
        self._cached_at = 0.0
        self._lock = asyncio.Lock()
        # Failing checks: when each started failing and when it was last logged.
        self._failing: dict[str, tuple[float, float]] = {}

    def register(self, check: HealthCheck) -> None:
        if check.name in self._checks:
            raise ValueError(f"a health check named {check.name!r} is already registered")
        self._checks[check.name] = check
        self._cached = None

    def register_detail(self, name: str, provider: Callable[[], object]) -> None:
        """Extra state shown by ``/health`` (e.g. circuit breakers); it never affects readiness."""
        self._details[name] = provider

    def details(self) -> dict[str, object]:
        return {name: provider() for name, provider in self._details.items()}

    @property
    def checks(self) -> tuple[HealthCheck, ...]:
        return tuple(self._checks.values())

    def mark_started(self) -> None:
        self.started = True
        self.stopping = False  # an app whose lifespan runs again is starting afresh

    def mark_stopping(self) -> None:
        self.stopping = True

    @property
    def draining(self) -> bool:
        return self.stopping or _shutdown_requested

    async def report(self) -> HealthReport:
        """Run every check (or reuse a fresh enough result); at most one run at a time."""
        async with self._lock:
            if self._cached is not None and self.clock() - self._cached_at < self.cache_seconds:
                return self._cached
            results = await asyncio.gather(*(self._run(check) for check in self._checks.values()))
            failing = tuple(r.name for r in results if r.critical and r.status == "fail")
            self._log_changes(results)
            self._cached = HealthReport(results=tuple(results), failing=failing)
            self._cached_at = self.clock()
            return self._cached

    def _log_changes(self, results: list[CheckResult]) -> None:
        """Log each check that starts failing, again every ``reminder_seconds`` while it fails, and once
        when it recovers: a lasting outage stays visible without a line per probe."""
        now = self.clock()
        for result in results:
            failing = self._failing.get(result.name)
            if result.status == "fail":
                since, logged_at = failing if failing is not None else (now, float("-inf"))
                if now - logged_at >= self.reminder_seconds:
                    logger.warning(
                        "health_check_failed",
                        logger=__name__,
                        check=result.name,
                        critical=result.critical,
                        error=result.cause or result.error,
                        failing_for_seconds=round(now - since, 3),
                    )
                    logged_at = now
                self._failing[result.name] = (since, logged_at)
            elif failing is not None:
                del self._failing[result.name]
                logger.info(
                    "health_check_recovered",
                    logger=__name__,
                    check=result.name,
                    failed_for_seconds=round(now - failing[0], 3),
                )

    async def _run(self, check: HealthCheck) -> CheckResult:
        timeout = check.timeout if check.timeout is not None else self.timeout
        started = time.perf_counter()
        error: str | None = None
        cause: str | None = None
        try:
            await asyncio.wait_for(check.probe(), timeout)
        except TimeoutError:
            error = f"timed out after {timeout:g}s"
        except Exception as exc:  # a failing dependency is a result to report, not a crash
            error = type(exc).__name__
            cause = repr(exc)[:500]
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        status: Status = "ok" if error is None else "fail"
        return CheckResult(check.name, status, latency_ms, check.critical, error, cause)


def health_router(registry: HealthRegistry, *, service: str, version: str) -> APIRouter:
    router = APIRouter(prefix="/health", tags=["health"])
    not_ready: dict[int | str, dict[str, Any]] = {
        503: {"description": "Not ready: starting, shutting down, or a critical check failed"}
    }

    @router.get("/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/startup", responses=not_ready)
    async def startup() -> JSONResponse:
        if registry.started:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "starting"}, status_code=503)

    @router.get("/ready", responses=not_ready)
    async def ready() -> JSONResponse:
        if registry.draining or not registry.started:
            reason = "shutting down" if registry.draining else "starting"
            return JSONResponse({"status": "fail", "reason": reason, "failing": []}, status_code=503)
        report = await registry.report()
        checks = {result.name: result.status for result in report.results}
        if report.ready:
            return JSONResponse({"status": "ok", "checks": checks})
        body = {"status": "fail", "failing": list(report.failing), "checks": checks}
        return JSONResponse(body, status_code=503)

    @router.get("", responses=not_ready)
    async def detailed() -> JSONResponse:
        report = await registry.report()
        accepting = registry.started and not registry.draining
        healthy = report.ready and accepting
        degraded = any(result.status == "fail" for result in report.results)
        body = {
            "status": "fail" if not healthy else "degraded" if degraded else "ok",
            "service": service,
            "version": version,
            "started": registry.started,
            "stopping": registry.draining,
            "uptime_seconds": round(registry.clock() - registry.started_at, 3),
            "components": {result.name: result.as_dict() for result in report.results},
            **registry.details(),
        }
        return JSONResponse(body, status_code=200 if healthy else 503)

    return router
