"""Request IDs: accepted from ``X-Request-ID`` when well-formed, generated otherwise.

asgi-correlation-id does the work (pure ASGI; it echoes the ID on every response and exposes it as a
contextvar). This module only decides what a valid ID looks like and how a new one is made.
"""

from __future__ import annotations

import os
import re
from typing import Any

REQUEST_ID_HEADER = "X-Request-ID"
# Wide enough for UUIDs, ULIDs and most tracing IDs; narrow enough that it cannot inject into logs.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,127}")


def new_request_id() -> str:
    # 128 random bits as hex: several times cheaper than str(uuid4()) on the hot path.
    return os.urandom(16).hex()


def is_valid_request_id(value: str) -> bool:
    return _VALID_REQUEST_ID.fullmatch(value) is not None


def request_id_options() -> dict[str, Any]:
    """Keyword arguments for ``CorrelationIdMiddleware``."""
    return {
        "header_name": REQUEST_ID_HEADER,
        "generator": new_request_id,
        "validator": is_valid_request_id,
        "update_request_header": True,
    }
