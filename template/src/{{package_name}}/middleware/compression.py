"""Response compression: Starlette's gzip, entered only where there is something to compress.

Starlette's GZipMiddleware builds a responder for every request (parsing the request headers and
normalising its list of excluded content types each time) and, for clients that do not accept gzip,
still wraps the response only to add ``Vary: Accept-Encoding`` to large uncompressed ones, on every
request. This wrapper goes around it for the two common cases:

- the client does not accept gzip: the response passes untouched (an uncompressed response suits every
  client, so a cache that hands it to a gzip client does no harm);
- the response declares a ``Content-Length`` below the minimum size (most JSON answers): it is too small
  to compress, which is what Starlette would decide too.

Everything else (large, streamed or unknown-length responses) goes through Starlette's GZipResponder
exactly as its middleware would run it.
"""

from __future__ import annotations

from starlette.middleware.gzip import GZipMiddleware as StarletteGZipMiddleware
from starlette.middleware.gzip import GZipResponder
from starlette.types import Message, Receive, Scope, Send


def accepts_gzip(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == b"accept-encoding" and b"gzip" in value for name, value in headers)


def declared_size(start: Message) -> int | None:
    """The ``Content-Length`` a response start message declares, if any."""
    for name, value in start.get("headers", ()):
        if name.lower() == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class GZipMiddleware(StarletteGZipMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not accepts_gzip(scope["headers"]):
            await self.app(scope, receive, send)
            return
        forward: Send | None = None  # decided by the response's first message

        async def send_compressed_if_worth_it(message: Message) -> None:
            nonlocal forward
            if forward is None:
                size = declared_size(message) if message["type"] == "http.response.start" else None
                if size is not None and size < self.minimum_size:
                    forward = send
                else:
                    responder = GZipResponder(
                        self.app,
                        self.minimum_size,
                        compresslevel=self.compresslevel,
                        thread_minimum_size=self.thread_minimum_size,
                        exclude_content_types=self.exclude_content_types,
                    )
                    responder.send = send  # what the responder's own __call__ does before the app runs
                    forward = responder.send_with_compression
            await forward(message)

        await self.app(scope, receive, send_compressed_if_worth_it)
