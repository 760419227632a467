"""Access log: one structured line per HTTP request, written after the response is sent.

The line names the route template (``/items/{item_id}``), never only the raw path, so logs group by
endpoint. Probe routes (health, metrics) are logged only when they fail, so they cannot drown the rest.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..logging import get_logger
from . import RouteTemplates


class AccessLogMiddleware:
    def __init__(
        self, app: ASGIApp, *, route_templates: RouteTemplates, quiet_paths: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.route_template = route_templates
        self.quiet_paths = frozenset(quiet_paths)
        self.logger = get_logger("access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        # Values bound for one request (e.g. the API key id) must not follow the next one on this task.
        structlog.contextvars.clear_contextvars()
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before starting a response

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            if status >= 400 or scope["path"] not in self.quiet_paths:
                client = scope.get("client")
                self.logger.info(
                    "request",
                    method=scope["method"],
                    route=self.route_template(scope),
                    path=scope["path"],
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 3),
                    client_ip=client[0] if client else None,
                )
