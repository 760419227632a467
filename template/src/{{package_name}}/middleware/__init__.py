"""Pure ASGI middleware, one concern per module (never BaseHTTPMiddleware: it breaks contextvars)."""

from __future__ import annotations

from fastapi.routing import iter_route_contexts
from starlette.types import Scope

UNMATCHED_ROUTE = "<unmatched>"


class RouteTemplates:
    """The full template (``/api/v1/items/{item_id}``) of the route a request matched.

    Since FastAPI 0.137, ``include_router`` nests routers, so ``scope["route"].path_format`` lacks the
    include prefixes. The full templates come from FastAPI's public ``iter_route_contexts``, looked up once
    per route object and cached; the rare miss (a route added after start-up) refreshes the table.
    """

    def __init__(self) -> None:
        self._by_route: dict[int, str] = {}

    def __call__(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            return UNMATCHED_ROUTE
        template = self._by_route.get(id(route))
        if template is None:
            self._refresh(scope)
            template = self._by_route.setdefault(id(route), getattr(route, "path_format", UNMATCHED_ROUTE))
        return template

    def _refresh(self, scope: Scope) -> None:
        app = scope.get("app")
        for context in iter_route_contexts(getattr(app, "routes", [])):
            if context.path_format is not None:
                self._by_route.setdefault(id(context.original_route), context.path_format)
