"""HEAD on every GET route, and a 405 whose ``Allow`` header lists every method of the path.

FastAPI routes answer only the methods they declare, so probes and load balancers that send HEAD get a
405; and Starlette answers a wrong method with the methods of the first route of that path alone (``POST``
where ``GET`` and ``POST`` both exist). ``add_method_fallbacks`` appends one catch-all route per path after
every other route: a request reaches it only when no route took it, so matched requests never pay for it,
and the OpenAPI schema does not show it.
"""

from __future__ import annotations

from collections import defaultdict

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.routing import Route
from starlette.types import Receive, Scope, Send


class MethodFallback:
    """ASGI endpoint behind a path's other routes: HEAD runs the path's GET route, other methods get 405."""

    def __init__(self, methods: frozenset[str]) -> None:
        self.answers_head = "GET" in methods
        self.allow = ", ".join(sorted(methods | {"HEAD"} if self.answers_head else methods))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.answers_head and scope["method"] == "HEAD":
            # Routed again as GET: same status and headers; the server drops the body of a HEAD response.
            await scope["router"]({**scope, "method": "GET"}, receive, send)
            return
        raise HTTPException(status_code=405, headers={"Allow": self.allow})


def add_method_fallbacks(app: FastAPI) -> None:
    """Give every HTTP path of ``app`` its fallback; call it once, after the last route is added."""
    methods_by_path: dict[str, set[str]] = defaultdict(set)
    for context in iter_route_contexts(app.routes):
        if context.path is not None and context.methods:
            methods_by_path[context.path] |= context.methods
    # A Route whose endpoint is an ASGI app, not a function: it gets the raw scope, to route HEAD again.
    app.router.routes.extend(
        Route(path, MethodFallback(frozenset(methods)), include_in_schema=False)
        for path, methods in methods_by_path.items()
    )
