"""CORS: Starlette's CORSMiddleware for browser cross-origin requests, a short cut for everything else.

Starlette rewrites the headers of every response, also for requests without an ``Origin`` header (server
to server, same-origin), only to add ``Vary: Origin``. Those requests get that one precomputed header
here and skip the rewriting; requests with an ``Origin`` (and preflights) go through Starlette unchanged.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware as StarletteCORSMiddleware
from starlette.types import Message, Receive, Scope, Send

VARY_ORIGIN = (b"vary", b"Origin")


def has_origin(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == b"origin" for name, _ in headers)


class CORSMiddleware(StarletteCORSMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or has_origin(scope["headers"]):
            await super().__call__(scope, receive, send)
            return

        async def send_with_vary(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), VARY_ORIGIN]
            await send(message)

        await self.app(scope, receive, send_with_vary)
