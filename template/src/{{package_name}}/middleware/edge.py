"""The outermost layer: request ID, security headers, RED metrics and the access log, in one pass.

Each concern keeps its own module (``request_id.py``, ``security_headers.py``, ``access_log.py``,
``..metrics``); this layer only runs them around the request. One layer instead of four because every
pure-ASGI layer wraps ``send`` again and copies the response headers again (and asgi-correlation-id's
middleware parses the headers twice), so one pass saves most of that work on every request.

Metrics and the access log label requests by route template, never the raw path, so IDs in URLs cannot
explode the series count; they wrap everything below, so refused requests (401, 413, 429) are still
counted and logged, and an exception that escapes counts as the 500 the client gets.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from asgi_correlation_id import correlation_id
from asgi_correlation_id.extensions.sentry import get_sentry_extension
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ShuttingDown, send_problem
from ..logging import mark_logged
from ..metrics import Metrics
from . import RouteTemplates
from .access_log import AccessLog
from .request_id import REQUEST_ID_HEADER, request_id_for
from .security_headers import SecurityHeaders

_REQUEST_ID = REQUEST_ID_HEADER.lower().encode()


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        access_log: AccessLog,
        security_headers: SecurityHeaders,
        route_templates: RouteTemplates,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log
        self.security_headers = security_headers
        self.route_template = route_templates
        self.tag_error_reports = get_sentry_extension()  # a no-op unless sentry-sdk is installed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                correlation_id.set(request_id_for(scope))
            await self.app(scope, receive, send)
            return

        # Values bound for one request (e.g. the API key id) must not follow the next one on this task.
        structlog.contextvars.clear_contextvars()
        request_id = request_id_for(scope)
        correlation_id.set(request_id)
        self.tag_error_reports(request_id)
        extra_headers = [
            *self.security_headers.for_path(scope["path"]),
            (_REQUEST_ID, request_id.encode()),
        ]
        method = self.metrics.method_label(scope["method"])
        in_progress = self.metrics.in_progress_for(method)
        status = 500  # what the client gets if the app raises before starting a response
        started_response = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status = message["status"]
                started_response = True
                # A new list: the app's response object may hold (and reuse) the one it sent.
                message["headers"] = [*message.get("headers", ()), *extra_headers]
            await send(message)

        started = time.perf_counter()
        in_progress.inc()
        try:
            await self.app(scope, receive, send_with_headers)
        except asyncio.CancelledError as cancelled:
            # The server cancels what still runs when its shutdown timeout ends, then would answer with
            # plain text: the client gets a problem document instead, and the server logs no traceback.
            if not started_response:
                status, code, detail = ShuttingDown.status, ShuttingDown.code, ShuttingDown.default_detail
                headers = [*extra_headers, (b"connection", b"close")]
                await send_problem(send, status, code, detail, scope["path"], headers=headers)
                mark_logged(cancelled)
            raise
        finally:
            seconds = time.perf_counter() - started
            in_progress.dec()
            route = self.route_template(scope)
            self.metrics.observe_request(method, route, status, seconds)
            self.access_log(scope, route, status, seconds)
