"""``Connection: close`` on every response while the service drains before it stops.

Clients and proxies then open their next connection elsewhere, instead of sending it down a keep-alive
connection that the server is about to close (where a request can cross the close and be lost).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONNECTION_CLOSE = (b"connection", b"close")


class ConnectionCloseWhileDraining:
    def __init__(self, app: ASGIApp, *, draining: Callable[[], bool]) -> None:
        self.app = app
        self.draining = draining

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.draining():
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), CONNECTION_CLOSE]
            await send(message)

        await self.app(scope, receive, send_closing)
