"""An example upstream HTTP client wired with the service's resilience policies.

One logical call goes: circuit breaker (rejects at once while the upstream is known to be down) ->
retry policy (idempotent calls only) -> throttle (waits for the upstream's quota, every attempt counts)
-> one HTTP attempt with timeouts and the request ID forwarded. Errors leave as the service's own
exceptions: a timeout is 504, an unreachable or overloaded upstream 503 with Retry-After, any other
upstream error 502. Copy this module for each real upstream you add.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import structlog
from asgi_correlation_id import correlation_id

from ..errors import AppError, DependencyUnavailable, UpstreamError, UpstreamTimeout
from ..middleware.request_id import REQUEST_ID_HEADER
from ..resilience.breaker import CircuitBreaker
from ..resilience.retry import RETRYABLE_STATUSES, RetryableStatus, RetryPolicy, parse_retry_after
from ..resilience.throttle import Throttle

logger = structlog.get_logger(__name__)


def is_upstream_failure(exc: BaseException) -> bool:
    """What counts against the breaker: the upstream's fault, not ours (4xx other than 429 is ours)."""
    if isinstance(exc, RetryableStatus):
        return True
    if isinstance(exc, UpstreamStatusError):
        return exc.upstream_status >= 500
    return isinstance(exc, httpx.TransportError)


class UpstreamStatusError(UpstreamError):
    """The upstream answered with an error status that retrying will not fix."""

    def __init__(self, upstream: str, status: int) -> None:
        super().__init__(f"{upstream} answered {status}.")
        self.upstream_status = status


class UpstreamClient:
    def __init__(
        self,
        name: str,
        http: httpx.AsyncClient,
        *,
        breaker: CircuitBreaker,
        retry: RetryPolicy,
        throttle: Throttle | None = None,
        on_retry: Callable[[str], None] | None = None,
        on_attempt: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self.name = name
        self.http = http
        self.breaker = breaker
        self.retry = retry
        self.throttle = throttle
        self.on_retry = on_retry
        self.on_attempt = on_attempt

    async def get_json(self, path: str) -> Any:
        """GET ``path`` (idempotent: retried on retryable errors) and decode the JSON answer."""
        response = await self._call("GET", path, idempotent=True)
        try:
            return response.json()
        except ValueError:
            raise UpstreamError(f"{self.name} answered with invalid JSON.") from None

    async def _call(self, method: str, path: str, *, idempotent: bool) -> httpx.Response:
        async def attempt() -> httpx.Response:
            if self.throttle is not None:
                await self.throttle.acquire()
            return await self._send(method, path)

        async def with_retries() -> httpx.Response:
            return await self.retry.call(attempt, idempotent=idempotent, on_retry=self.on_retry)

        try:
            return await self.breaker.call(with_retries)
        except AppError:
            raise
        except RetryableStatus as exc:
            raise DependencyUnavailable(
                f"{self.name} is overloaded or unavailable (it answered {exc.status}).",
                retry_after=exc.retry_after,
            ) from exc
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"{self.name} did not answer in time.") from exc
        except httpx.TransportError as exc:
            raise DependencyUnavailable(f"{self.name} is unreachable.", retry_after=5) from exc

    async def _send(self, method: str, path: str) -> httpx.Response:
        started = time.perf_counter()
        outcome = "error"
        try:
            request_id = correlation_id.get()
            headers = {REQUEST_ID_HEADER: request_id} if request_id else None
            response = await self.http.request(method, path, headers=headers)
            outcome = str(response.status_code)
        finally:
            if self.on_attempt is not None:
                self.on_attempt(self.name, outcome, time.perf_counter() - started)
        if response.status_code in RETRYABLE_STATUSES:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise RetryableStatus(self.name, response.status_code, retry_after)
        if response.status_code >= 400:
            logger.warning("upstream_error_status", upstream=self.name, status=response.status_code)
            raise UpstreamStatusError(self.name, response.status_code)
        return response
