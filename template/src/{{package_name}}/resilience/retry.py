"""Retry policies for outbound calls, on tenacity.

A policy is a value (``UPSTREAM_RETRY = RetryPolicy(...)``) that makes a FRESH ``AsyncRetrying`` per call:
sharing one retrying object across concurrent calls shares its statistics and state (a known tenacity
pitfall). Backoff is exponential with full jitter, bounded by attempts AND by the total time spent
waiting; a ``Retry-After`` from the upstream is honoured. Only retryable errors are retried (timeouts,
connection errors, 429/502/503/504), and only for idempotent calls unless the caller says otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, retry_never, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_random_exponential

T = TypeVar("T")
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
logger = structlog.get_logger(__name__)


class RetryableStatus(Exception):
    """An upstream answered with a status worth retrying (a signal between client and policy, never
    shown to clients); ``retry_after`` comes from the upstream's header."""

    def __init__(self, upstream: str, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"{upstream} answered {status}")
        self.upstream = upstream
        self.status = status
        self.retry_after = retry_after


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, RetryableStatus):
        return exc.status in RETRYABLE_STATUSES
    return isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds only; HTTP dates are rare from APIs)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class _StopWhenWaitingTooLong(stop_base):
    """Stop before a sleep would push the total time spent waiting past ``max_delay``."""

    def __init__(self, max_delay: float) -> None:
        self.max_delay = max_delay

    def __call__(self, state: RetryCallState) -> bool:
        return state.idle_for + (state.upcoming_sleep or 0.0) > self.max_delay


class _WaitRetryAfterOrJitter:
    """The upstream's Retry-After when it sent one, else exponential backoff with full jitter."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.jitter = wait_random_exponential(multiplier=initial, max=maximum)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableStatus) and exc.retry_after is not None:
            return exc.retry_after
        return float(self.jitter(state))


@dataclass(frozen=True)
class RetryPolicy:
    name: str
    max_attempts: int = 3
    max_delay: float = 10.0  # total seconds spent waiting between attempts
    initial_backoff: float = 0.2
    max_backoff: float = 5.0

    def retrying(
        self,
        *,
        idempotent: bool,
        on_retry: Callable[[str], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> AsyncRetrying:
        """A new retrying object for one call (never share one between calls)."""

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            logger.warning(
                "retrying",
                policy=self.name,
                attempt=state.attempt_number,
                wait_seconds=round(state.upcoming_sleep, 3),
                error=repr(exc),
            )
            if on_retry is not None:
                on_retry(self.name)

        return AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts) | _StopWhenWaitingTooLong(self.max_delay),
            wait=_WaitRetryAfterOrJitter(self.initial_backoff, self.max_backoff),
            retry=retry_if_exception(is_retryable) if idempotent else retry_never,
            before_sleep=before_sleep,
            sleep=sleep,
            reraise=True,
        )

    async def call(
        self,
        func: Callable[[], Awaitable[T]],
        *,
        idempotent: bool,
        on_retry: Callable[[str], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> T:
        """Run ``func`` with this policy; non-idempotent calls are tried once unless ``idempotent``."""
        async for attempt in self.retrying(idempotent=idempotent, on_retry=on_retry, sleep=sleep):
            with attempt:
                return await func()
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover
