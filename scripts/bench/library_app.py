"""The comparison a user would otherwise assemble from libraries: the bare app plus slowapi rate limits,
prometheus-fastapi-instrumentator metrics, and BaseHTTPMiddleware classes for the access log and for the
request-ID and security headers, each configured the way their READMEs show.

Same endpoint and answers as bare_app.py, same limits as the hardened run (per client and global, memory
storage, high enough that the load never gets a 429 while the limiter still counts every request).
"""

from __future__ import annotations

import os
import time
import uuid

import structlog
from bare_app import create_bare_app
from prometheus_fastapi_instrumentator import Instrumentator
from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from slowapi.middleware import SlowAPIMiddleware
from slowapi.util import get_remote_address
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
}

structlog.configure(
    processors=[
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.JSONRenderer(),
    ],
    logger_factory=structlog.PrintLoggerFactory(),
)
logger = structlog.get_logger("access")


class HeadersMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
        structlog.contextvars.bind_contextvars(request_id=request_id)
        response = await call_next(request)
        response.headers["X-Request-ID"] = request_id
        response.headers.update(SECURITY_HEADERS)
        return response


class AccessLogMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        logger.info(
            "request",
            method=request.method,
            path=request.url.path,
            status=response.status_code,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            client_ip=request.client.host if request.client else None,
        )
        return response


app = create_bare_app()
limiter = Limiter(
    key_func=get_remote_address,
    default_limits=[os.environ.get("BENCH_RATE_LIMIT_PER_CLIENT", "100000000/minute;1000000000/hour")],
    application_limits=[os.environ.get("BENCH_RATE_LIMIT_GLOBAL", "1000000000/minute")],
    headers_enabled=True,
)
app.state.limiter = limiter
app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
app.add_middleware(SlowAPIMiddleware)
app.add_middleware(AccessLogMiddleware)
app.add_middleware(HeadersMiddleware)
Instrumentator().instrument(app).expose(app)
