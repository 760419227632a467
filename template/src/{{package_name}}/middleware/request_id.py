"""Request IDs: accepted from ``X-Request-ID`` when well-formed, generated otherwise.

The ID lives in asgi-correlation-id's ``correlation_id`` contextvar, which logging, error bodies and
outbound calls read. The edge layer (``edge.py``) sets it and echoes it on the response; this module
decides what a valid ID looks like and how a new one is made.
"""

from __future__ import annotations

import os
import re

from starlette.types import Scope

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER = REQUEST_ID_HEADER.lower().encode()
# Wide enough for UUIDs, ULIDs and most tracing IDs; narrow enough that it cannot inject into logs.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,127}")


def new_request_id() -> str:
    # 128 random bits as hex: several times cheaper than str(uuid4()) on the hot path.
    return os.urandom(16).hex()


def is_valid_request_id(value: str) -> bool:
    return _VALID_REQUEST_ID.fullmatch(value) is not None


def request_id_for(scope: Scope) -> str:
    """The request's ID: its well-formed ``X-Request-ID``, else a new one, which then replaces the
    header in ``scope`` so everything downstream sees the same ID."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for index, (name, value) in enumerate(headers):
        if name == _HEADER:
            incoming = value.decode("latin-1")
            if is_valid_request_id(incoming):
                return incoming
            request_id = new_request_id()
            headers[index] = (_HEADER, request_id.encode())
            return request_id
    request_id = new_request_id()
    scope["headers"] = [*headers, (_HEADER, request_id.encode())]
    return request_id
