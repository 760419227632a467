"""Bounds on each request's header section, in front of uvicorn's HTTP parser (httptools or h11 alike).

Neither parser bounds the number of header fields, httptools bounds no size at all, and neither closes a
connection that never finishes its headers. ``HeaderLimitedProtocol`` wraps uvicorn's protocol for each
connection and reads the bytes before the parser does: a request line plus header fields longer than
``APP_MAX_HEADER_BYTES`` or with more than ``APP_MAX_HEADER_FIELDS`` fields is answered 431 and the
connection closed, before the parser has buffered it; a connection whose header section is not complete
within ``APP_HEADER_TIMEOUT_SECONDS`` (counted from the connection, or from the first byte of a later
request on it) is closed, with 408 if it had sent part of one. So a connection holds at most the limit's
worth of headers, however much a client sends. To find where each request ends on a keep-alive
connection, bodies are skipped by ``Content-Length`` or by their chunked framing; the parser behind
still validates all of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto
from functools import partial
from http import HTTPStatus
from typing import Any, cast

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from .errors import problem_body
from .logging import get_logger

HEAD_END = b"\r\n\r\n"
# After a refusal, how long what the client still sends is read and dropped before the connection closes:
# closing with unread data would reset the connection, and the client could lose the answer.
LINGER_SECONDS = 2.0
# Why a connection is refused: status, problem code, and what was wrong with its header section.
Refusal = tuple[int, str, str]


@dataclass(frozen=True)
class HeaderLimits:
    max_bytes: int
    max_fields: int
    timeout_seconds: float


class _Part(Enum):
    HEAD = auto()  # request line and header fields
    BODY = auto()  # a Content-Length body
    CHUNK_SIZE = auto()  # a chunk-size line
    CHUNK_DATA = auto()  # a chunk's data and its CRLF
    TRAILERS = auto()  # trailer fields after the last chunk
    REFUSED = auto()  # answered and closing: whatever else arrives is dropped


def _response(status: int, code: str, detail: str) -> bytes:
    body = problem_body(status, code, detail, instance="")
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class HeaderLimitedProtocol(asyncio.Protocol):
    """One connection: uvicorn's protocol (``inner``) behind a reader that bounds each header section."""

    def __init__(
        self, *, limits: HeaderLimits, inner: Callable[..., asyncio.Protocol], **uvicorn_arguments: Any
    ) -> None:
        self.limits = limits
        self.inner = inner(**uvicorn_arguments)
        self.loop = asyncio.get_running_loop()  # uvicorn makes protocols inside its loop
        self.transport: asyncio.Transport | None = None
        self.part = _Part.HEAD
        self.pending = bytearray()  # the current header section (or chunk-size line) so far
        self.remaining = 0  # body or chunk bytes still to skip
        self.timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol: everything goes on to uvicorn's protocol.
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # a stream server's connections are
        self.inner.connection_made(transport)
        self._start_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_clock()
        self.inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        if self.part is _Part.REFUSED:
            return False  # the client has read what it wanted: close now
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def data_received(self, data: bytes) -> None:
        if self.part is _Part.REFUSED:
            return
        if self.part is _Part.HEAD and not self.pending and self._whole_head(data):
            self.inner.data_received(data)  # the common case: one request's complete head, in one read
            return
        refusal = self._read(data)
        if refusal is None:
            self.inner.data_received(data)
        else:
            self._refuse(*refusal)

    def _whole_head(self, data: bytes) -> bool:
        """Whether ``data`` is exactly one request's head within the limits; framed for what follows."""
        length = data.find(HEAD_END) + len(HEAD_END)
        if length != len(data) or length > self.limits.max_bytes:
            return False
        if data.count(b"\n") - 2 > self.limits.max_fields:
            return False
        if self.timer is not None:
            self._stop_clock()
        self._frame_body(data)
        return True

    def _read(self, data: bytes) -> Refusal | None:
        """Follow ``data`` through the requests; a reason to refuse the connection, if any."""
        view = memoryview(data)
        refusal: Refusal | None = None
        while view and refusal is None:
            if self.part is _Part.HEAD or self.part is _Part.TRAILERS:
                view, refusal = self._read_fields(view)
            elif self.part is _Part.CHUNK_SIZE:
                view, refusal = self._read_chunk_size(view)
            else:  # a body, or a chunk's data: skipped
                skipped = min(self.remaining, len(view))
                self.remaining -= skipped
                view = view[skipped:]
                if self.remaining == 0:
                    self.part = _Part.CHUNK_SIZE if self.part is _Part.CHUNK_DATA else _Part.HEAD
        return refusal

    def _read_fields(self, view: memoryview) -> tuple[memoryview, Refusal | None]:
        """A header section (or the trailers), up to its empty line; the rest of ``view`` after it."""
        before = len(self.pending)
        # Never more than the limit (and its end marker) is kept, whatever a client sends.
        self.pending += view[: self.limits.max_bytes + len(HEAD_END) - before]
        if self.part is _Part.TRAILERS and self.pending.startswith(b"\r\n"):
            length = 2  # no trailer fields: the empty line right after the last chunk
        else:
            end = self.pending.find(HEAD_END, max(0, before - len(HEAD_END) + 1))
            length = -1 if end == -1 else end + len(HEAD_END)
        section = self.pending if length == -1 else self.pending[:length]
        # Line ends less the request line's (and the empty line's, once there): the complete fields.
        if section.count(b"\n") - (1 if length == -1 else 2) > self.limits.max_fields:
            return view[:0], (431, "too_many_header_fields", f"more than {self.limits.max_fields} fields")
        if len(section) > self.limits.max_bytes:
            return view[:0], (431, "header_too_large", f"longer than {self.limits.max_bytes} bytes")
        if length == -1:
            if self.timer is None and self.part is _Part.HEAD:
                self._start_clock()  # a later request on the connection: from its first byte
            return view[:0], None
        if self.part is _Part.TRAILERS:
            self.part = _Part.HEAD
        else:
            self._stop_clock()
            self._frame_body(bytes(section))
        self.pending.clear()
        return view[length - before :], None

    def _frame_body(self, head: bytes) -> None:
        """Where this request's body ends (RFC 9112, section 6.3); the parser behind refuses bad framing."""
        fields = head.lower()
        if b"\ntransfer-encoding:" in fields:
            self.part = _Part.CHUNK_SIZE
            return
        start = fields.find(b"\ncontent-length:")
        if start != -1:
            value = fields[start + len(b"\ncontent-length:") : fields.find(b"\n", start + 1)].strip()
            if value.isdigit() and int(value) > 0:
                self.part = _Part.BODY
                self.remaining = int(value)
                return
        self.part = _Part.HEAD

    def _read_chunk_size(self, view: memoryview) -> tuple[memoryview, Refusal | None]:
        line_end = bytes(view[: self.limits.max_bytes]).find(b"\n")
        self.pending += view[: self.limits.max_bytes if line_end == -1 else line_end]
        if len(self.pending) > self.limits.max_bytes:
            return view[:0], (400, "bad_request", "a chunk-size line without end")
        if line_end == -1:
            return view[:0], None
        digits = bytes(self.pending).split(b";", 1)[0].strip()
        self.pending.clear()
        try:
            size = int(digits, 16)
        except ValueError:
            size = 0  # malformed: the parser behind refuses it and closes the connection
        if size == 0:
            self.part = _Part.TRAILERS
        else:
            self.part = _Part.CHUNK_DATA
            self.remaining = size + len(b"\r\n")
        return view[line_end + 1 :], None

    def _refuse(self, status: int, code: str, detail: str) -> None:
        self._stop_clock()
        if self.transport is None or self.transport.is_closing():
            return
        get_logger(__name__).warning("request_headers_refused", status=status, code=code, detail=detail)
        self.part = _Part.REFUSED
        self.pending.clear()
        self.transport.write(_response(status, code, f"The request's header section: {detail}."))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _start_clock(self) -> None:
        self._stop_clock()
        self.timer = self.loop.call_later(self.limits.timeout_seconds, self._time_out)

    def _stop_clock(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _time_out(self) -> None:
        self.timer = None
        transport = self.transport
        # After a WebSocket upgrade the transport feeds another protocol: not ours to close.
        if transport is None or transport.is_closing() or transport.get_protocol() is not self:
            return
        if self.pending:
            self._refuse(408, "header_timeout", f"incomplete after {self.limits.timeout_seconds:g}s")
        else:
            transport.close()


def limited_http_protocol(
    limits: HeaderLimits, inner: Callable[..., asyncio.Protocol] = AutoHTTPProtocol
) -> type[asyncio.Protocol]:
    """For ``uvicorn.Config(http=...)``: uvicorn's own protocol (httptools where installed, else h11) behind
    the limits. uvicorn calls it as it would call a protocol class."""
    return cast("type[asyncio.Protocol]", partial(HeaderLimitedProtocol, limits=limits, inner=inner))
