"""Access log: one structured line per HTTP request, written after the response is sent.

The line names the route template (``/items/{item_id}``), never only the raw path, so logs group by
endpoint. Probe routes (health, metrics) are logged only when they fail, so they cannot drown the rest.
The edge layer (``edge.py``) times the request and calls ``AccessLog`` once it is over.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from starlette.types import Scope

from ..logging import event_writer


class AccessLog:
    def __init__(self, *, quiet_paths: Iterable[str] = ()) -> None:
        self.quiet_paths = frozenset(quiet_paths)
        # Written like get_logger("access").info("request", ...), without the bound logger's per-call work.
        self.write = event_writer()
        self.enabled = self.write.enabled(logging.INFO)

    def __call__(self, scope: Scope, route: str, status: int, seconds: float) -> None:
        if not self.enabled or (status < 400 and scope["path"] in self.quiet_paths):
            return
        client = scope.get("client")
        self.write(
            "info",
            {
                "logger": "access",
                "method": scope["method"],
                "route": route,
                "path": scope["path"],
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "client_ip": client[0] if client else None,
                "event": "request",
            },
        )
