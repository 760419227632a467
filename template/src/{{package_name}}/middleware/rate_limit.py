"""Inbound rate limiting as pure ASGI middleware: 429 problem+json with Retry-After when refused, and
RateLimit-Limit / -Remaining / -Reset headers on every limited response, allowed ones included.

Health and metrics routes are exempt, so a flood cannot make probes fail. The decision itself (keys,
limits, storage failure policy) lives in ratelimit/limiter.py.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import DependencyUnavailable, RateLimited, send_problem
from ..ratelimit.limiter import Decision, InboundLimiter


def _rate_limit_headers(decision: Decision) -> list[tuple[bytes, bytes]]:
    if not decision.limit:
        return []
    return [
        (b"ratelimit-limit", str(decision.limit).encode()),
        (b"ratelimit-remaining", str(decision.remaining).encode()),
        (b"ratelimit-reset", str(math.ceil(decision.reset_after)).encode()),
    ]


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, *, limiter: InboundLimiter, exempt_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.limiter = limiter
        self.exempt_paths = frozenset(exempt_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return

        decision = await self.limiter.check(scope)
        if not decision.allowed:
            await self._refuse(scope, send, decision)
            return
        headers = _rate_limit_headers(decision)
        if not headers:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, decision: Decision) -> None:
        if decision.storage_failed:  # fail-closed: the limiter cannot tell, so nobody gets through
            error: RateLimited | DependencyUnavailable = DependencyUnavailable(
                "Rate limiting is unavailable; retry shortly.", retry_after=5
            )
        else:
            error = RateLimited(retry_after=decision.reset_after)
        headers = [
            *((name.lower().encode(), value.encode()) for name, value in error.headers.items()),
            *_rate_limit_headers(decision),
        ]
        await send_problem(send, error.status, error.code, error.detail, scope["path"], headers=headers)
