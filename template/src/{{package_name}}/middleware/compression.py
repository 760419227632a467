"""Response compression: Starlette's GZipMiddleware, entered only by requests that accept gzip.

Starlette wraps every response, also for clients that never asked for gzip, only to add
``Vary: Accept-Encoding`` to large uncompressed ones (~10 us per request here). An uncompressed response
suits every client, so a cache that hands one to a gzip client does no harm: such requests skip the
wrapper. Compressed responses still carry ``Vary: Accept-Encoding``.
"""

from __future__ import annotations

from starlette.middleware.gzip import GZipMiddleware as StarletteGZipMiddleware
from starlette.types import Receive, Scope, Send


def accepts_gzip(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == b"accept-encoding" and b"gzip" in value for name, value in headers)


class GZipMiddleware(StarletteGZipMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and accepts_gzip(scope["headers"]):
            await super().__call__(scope, receive, send)
        else:
            await self.app(scope, receive, send)
