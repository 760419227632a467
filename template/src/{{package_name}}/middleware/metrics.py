"""RED metrics per request: count and latency by method, route template and status; in-flight gauge.

Labels use the route template, never the raw path, so IDs in URLs cannot explode the series count.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..metrics import Metrics
from . import RouteTemplates


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, route_templates: RouteTemplates) -> None:
        self.app = app
        self.metrics = metrics
        self.route_template = route_templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        method = self.metrics.method_label(scope["method"])
        in_progress = self.metrics.in_progress_for(method)
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        in_progress.inc()
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            in_progress.dec()
            self.metrics.observe_request(
                method, self.route_template(scope), status, time.perf_counter() - started
            )
