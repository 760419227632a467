"""The service's exceptions and their one rendering: RFC 9457 problem details.

Domain code raises these and never builds HTTP responses. Each error has an HTTP status, a stable
machine-readable ``code`` clients can switch on, and a detail that is safe to show. Unhandled exceptions
become a generic 500 that carries only the request ID; the traceback goes to the log, never to the client.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine, Iterable, Mapping
from http import HTTPStatus
from typing import Any, ClassVar

import orjson
import structlog
from asgi_correlation_id import correlation_id
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Send

from .logging import mark_logged
from .middleware.request_id import REQUEST_ID_HEADER

PROBLEM_JSON = "application/problem+json"
logger = structlog.get_logger(__name__)


class InvalidField(BaseModel):
    loc: list[str | int]
    message: str
    type: str


class Problem(BaseModel):
    """The body of every error response (RFC 9457), as documented in the OpenAPI schema."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str
    code: str
    request_id: str | None = None
    errors: list[InvalidField] | None = Field(default=None, description="422 only: what was invalid")


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the problem documents a route can answer with."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "model": Problem,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


class AppError(Exception):
    """Base of every error the service means to report to a client."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    default_detail: ClassVar[str] = "The server could not complete the request."

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.detail = detail or self.default_detail
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        super().__init__(self.detail)


class _RetryableError(AppError):
    """An error the client may retry; ``retry_after`` (seconds) becomes a Retry-After header."""

    def __init__(
        self,
        detail: str | None = None,
        *,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        merged = dict(headers or {})
        self.retry_after = retry_after
        if retry_after is not None:
            merged["Retry-After"] = str(max(0, math.ceil(retry_after)))
        super().__init__(detail, headers=merged, extra=extra)


class BadRequest(AppError):
    status = 400
    code = "bad_request"
    default_detail = "The request is malformed."


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"
    default_detail = "Valid credentials are required."


class Forbidden(AppError):
    status = 403
    code = "forbidden"
    default_detail = "The credentials do not allow this operation."


class NotFound(AppError):
    status = 404
    code = "not_found"
    default_detail = "The resource does not exist."


class Conflict(AppError):
    status = 409
    code = "conflict"
    default_detail = "The request conflicts with the current state of the resource."


class PayloadTooLarge(AppError):
    status = 413
    code = "payload_too_large"
    default_detail = "The request body is too large."


class ValidationFailed(AppError):
    status = 422
    code = "validation_failed"
    default_detail = "The request is not valid."


class RateLimited(_RetryableError):
    status = 429
    code = "rate_limited"
    default_detail = "Too many requests; retry later."


class UpstreamError(AppError):
    status = 502
    code = "upstream_error"
    default_detail = "An upstream service answered with an error."


class DependencyUnavailable(_RetryableError):
    status = 503
    code = "dependency_unavailable"
    default_detail = "A service this request depends on is unavailable; retry later."


class DatabaseBusy(_RetryableError):
    """A write waited its full time for a lock another writer held: contention, not an outage."""

    status = 503
    code = "database_busy"
    default_detail = "The database is busy with other writes; retry shortly."


class ShuttingDown(_RetryableError):
    """A request still running when the server's shutdown timeout ended, and was cancelled."""

    status = 503
    code = "shutting_down"
    default_detail = "The service stopped while handling the request; retry it."


class DependencyTimeout(_RetryableError):
    status = 504
    code = "dependency_timeout"
    default_detail = "A service this request depends on did not answer in time; retry later."


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"
    default_detail = "An upstream service did not answer in time."


_CODES_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def problem_body(
    status: int, code: str, detail: str, instance: str, extra: Mapping[str, Any] | None = None
) -> bytes:
    """An RFC 9457 problem document; ``type`` is about:blank, so ``title`` is the status phrase."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
        "code": code,
        "request_id": correlation_id.get(),
    }
    if extra:
        body.update({key: value for key, value in extra.items() if key not in body})
    return orjson.dumps(body)


async def send_problem(
    send: Send,
    status: int,
    code: str,
    detail: str,
    instance: str,
    *,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """A problem document sent straight from pure ASGI middleware (a refusal before the app runs)."""
    body = problem_body(status, code, detail, instance)
    start = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})


def problem_response(
    request: Request,
    status: int,
    code: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    body = problem_body(status, code, detail, request.url.path, extra)
    return Response(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


async def handle_app_error(request: Request, exc: AppError) -> Response:
    if exc.status >= 500:
        logger.warning("request_failed", logger=__name__, code=exc.code, status=exc.status, detail=exc.detail)
    return problem_response(request, exc.status, exc.code, exc.detail, headers=exc.headers, extra=exc.extra)


async def handle_http_exception(request: Request, exc: HTTPException) -> Response:
    code = _CODES_BY_STATUS.get(exc.status_code, f"http_{exc.status_code}")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return problem_response(request, exc.status_code, code, detail, headers=exc.headers)


async def handle_validation_error(request: Request, exc: RequestValidationError) -> Response:
    # Only where and why: the offending input is not echoed back (it may hold secrets).
    errors = [
        {"loc": list(error["loc"]), "message": error["msg"], "type": error["type"]} for error in exc.errors()
    ]
    return problem_response(
        request,
        ValidationFailed.status,
        ValidationFailed.code,
        "The request is not valid; see errors.",
        extra={"errors": errors},
    )


async def handle_unexpected_error(request: Request, exc: Exception) -> Response:
    """Last resort: runs in Starlette's ServerErrorMiddleware, outside the request-ID middleware."""
    logger.error(
        "unhandled_exception",
        logger=__name__,
        method=request.method,
        path=request.url.path,
        exc_info=exc,
    )
    mark_logged(exc)
    request_id = correlation_id.get()
    # The server may be in an unknown state after an unexpected error: the client reconnects afresh.
    headers = {"Connection": "close"}
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    response = problem_response(request, 500, AppError.code, AppError.default_detail, headers=headers)
    # Outside the edge layer, so its security headers are added here (create_app leaves them in state).
    security_headers = getattr(request.app.state, "security_headers", None)
    if security_headers is not None:
        response.raw_headers.extend(security_headers.for_path(request.url.path))
    return response


# FastAPI types handler arguments as Any, so each handler can name the exception it renders.
Handler = Callable[[Request, Any], Coroutine[Any, Any, Response]]


def exception_handlers() -> dict[int | type[Exception], Handler]:
    """Handlers for ``FastAPI(exception_handlers=...)``; ``Exception`` is the last-resort 500."""
    return {
        AppError: handle_app_error,
        HTTPException: handle_http_exception,
        RequestValidationError: handle_validation_error,
        Exception: handle_unexpected_error,
    }
