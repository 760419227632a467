"""The inbound limiter: several limits per client plus global ones, checked in one storage call per request.

``check`` never raises for storage trouble: it answers fail-open (allowed, counted, logged at most once
per interval) or fail-closed (refused as unavailable), as configured, so a request is never lost to a 500.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import structlog
from limits import parse_many
from starlette.types import Scope

from .windows import Window, Windows

logger = structlog.get_logger(__name__)
WINDOWS_CACHE_SIZE = 10_000


class Decision(NamedTuple):  # made on every request: a NamedTuple costs half a frozen dataclass
    allowed: bool
    limit: int = 0  # the client limit the headers describe
    remaining: int = 0
    reset_after: float = 0.0  # seconds until that limit's window frees capacity
    rejected_by: str | None = None  # "client" or "global" when refused
    storage_failed: bool = False


class InboundLimiter:
    def __init__(
        self,
        windows: Windows,
        *,
        per_client: str,
        global_limits: str,
        key_for: Callable[[Scope], str],
        fail_open: bool,
        on_rejected: Callable[[str], None] | None = None,
        on_storage_failure: Callable[[bool], None] | None = None,
        log_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.windows = windows
        # (amount, seconds) of each limit, in order; the first client limit is the one the headers show.
        self.client_limits = tuple(
            (item.amount, item.get_expiry()) for item in (parse_many(per_client) if per_client else ())
        )
        self.global_limits = tuple(
            Window(f"global/{item.amount}/{item.get_expiry()}", item.amount, item.get_expiry())
            for item in (parse_many(global_limits) if global_limits else ())
        )
        self.key_for = key_for
        self.fail_open = fail_open
        self.on_rejected = on_rejected
        self.on_storage_failure = on_storage_failure
        self.log_interval = log_interval
        self.clock = clock
        self._last_failure_log = float("-inf")
        self._failures_since_log = 0
        self._windows_by_key: dict[str, tuple[Window, ...]] = {}

    async def check(self, scope: Scope) -> Decision:
        try:
            return await self._check(self.key_for(scope))
        except Exception as exc:  # the storage is down or slow: the configured policy decides
            return self._storage_failed(exc)

    def _windows_for(self, key: str) -> tuple[Window, ...]:
        """The global windows and ``key``'s own, remembered for recent keys (built once, not per request)."""
        windows = self._windows_by_key.get(key)
        if windows is None:
            if len(self._windows_by_key) >= WINDOWS_CACHE_SIZE:
                self._windows_by_key.clear()  # a flood of distinct clients: start over, stay bounded
            client_windows = (
                Window(f"client/{key}/{amount}/{seconds}", amount, seconds)
                for amount, seconds in self.client_limits
            )
            windows = self._windows_by_key[key] = (*self.global_limits, *client_windows)
        return windows

    async def _check(self, key: str) -> Decision:
        windows = self._windows_for(key)
        if not windows:
            return Decision(allowed=True)
        first_client = len(self.global_limits)
        verdict = await self.windows.acquire(windows, report=min(first_client, len(windows) - 1))
        if verdict.refused is not None:
            scope = "global" if verdict.refused < first_client else "client"
            if self.on_rejected is not None:
                self.on_rejected(scope)
            return Decision(
                allowed=False,
                limit=windows[verdict.refused].amount,
                remaining=0,
                reset_after=max(1.0, verdict.reset_after),
                rejected_by=scope,
            )
        if not self.client_limits:
            return Decision(allowed=True)
        return Decision(
            allowed=True,
            limit=windows[first_client].amount,
            remaining=verdict.remaining,
            reset_after=verdict.reset_after,
        )

    def _storage_failed(self, exc: Exception) -> Decision:
        if self.on_storage_failure is not None:
            self.on_storage_failure(self.fail_open)
        self._failures_since_log += 1
        now = self.clock()
        if now - self._last_failure_log >= self.log_interval:
            logger.error(
                "rate_limit_storage_failed",
                logger=__name__,
                policy="fail_open" if self.fail_open else "fail_closed",
                failures_since_last_log=self._failures_since_log,
                error=repr(exc),
            )
            self._last_failure_log = now
            self._failures_since_log = 0
        return Decision(allowed=self.fail_open, storage_failed=True)
