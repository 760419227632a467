"""Outbound throttle: wait for capacity before calling an upstream that allows only N calls per window.

Unlike the inbound limiter, which refuses, this one WAITS (up to ``max_wait``) for the window to free a
slot, then raises ``RateLimited``. Built on ``limits``; the storage is shared through Redis when the
service has it, so replicas share the upstream's quota. If the storage fails the call goes ahead (the
upstream's own limit still applies) and the failure is logged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog
from limits import RateLimitItem, parse
from limits.aio.strategies import RateLimiter

from ..errors import RateLimited

logger = structlog.get_logger(__name__)
# A floor so a window that reports "now" as its reset does not spin.
_MIN_WAIT = 0.01


class Throttle:
    def __init__(
        self,
        name: str,
        limiter: RateLimiter,
        limit: str | RateLimitItem,
        *,
        max_wait: float,
        on_wait: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name = name
        self.limiter = limiter
        self.limit = parse(limit) if isinstance(limit, str) else limit
        self.max_wait = max_wait
        self.on_wait = on_wait
        self.clock = clock
        self.sleep = sleep

    async def acquire(self) -> None:
        """Return once a call may go out; raise ``RateLimited`` if that would take over ``max_wait``."""
        waited = 0.0
        while True:
            try:
                if await self.limiter.hit(self.limit, "throttle", self.name):
                    break
                stats = await self.limiter.get_window_stats(self.limit, "throttle", self.name)
            except Exception as exc:  # storage down: let the call go, the upstream still limits
                logger.warning("throttle_storage_failed", upstream=self.name, error=repr(exc))
                break
            wait = max(_MIN_WAIT, stats.reset_time - self.clock())
            if waited + wait > self.max_wait:
                raise RateLimited(
                    f"{self.name} allows {self.limit}; no capacity within {self.max_wait:g}s.",
                    retry_after=wait,
                )
            await self.sleep(wait)
            waited += wait
        if self.on_wait is not None:
            self.on_wait(waited)
