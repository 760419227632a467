"""Pure ASGI middleware, one concern per module (never BaseHTTPMiddleware: it breaks contextvars)."""

from starlette.types import Scope

UNMATCHED_ROUTE = "<unmatched>"


def route_template(scope: Scope) -> str:
    """The matched route's template (``/items/{item_id}``); set by the router, read after the call."""
    route = scope.get("route")
    template: str = getattr(route, "path_format", UNMATCHED_ROUTE)
    return template
