"""Request body size limit: 413 problem+json, whether the size is declared or streamed.

A declared Content-Length over the limit is refused before the body is read. A body without one
(chunked) is counted as the app reads it; crossing the limit raises an HTTPException(413), which FastAPI
passes through its body parsing untouched and errors.py renders like every other error.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import PayloadTooLarge, send_problem


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body exceeds the limit of {limit} bytes.")


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                # A malformed Content-Length never gets here: the HTTP server rejects it.
                if value.isdigit() and int(value) > self.max_bytes:
                    await self._refuse(scope, send)
                    return
                break

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        detail = f"The request body exceeds the limit of {self.max_bytes} bytes."
        await send_problem(
            send,
            PayloadTooLarge.status,
            PayloadTooLarge.code,
            detail,
            scope["path"],
            headers=[(b"connection", b"close")],
        )
