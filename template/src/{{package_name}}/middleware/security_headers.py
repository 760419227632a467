"""Security headers on every HTTP response, computed once at start-up (the edge layer adds them).

API responses get a lock-down Content-Security-Policy; the interactive docs (/docs, /redoc) get their own
policy that allows the Swagger/ReDoc assets they load, so hardening never breaks them. HSTS is sent only
when enabled (by default in production, where TLS terminates in front of the service).
"""

from __future__ import annotations

from collections.abc import Iterable

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# FastAPI's docs pages load their bundles from jsDelivr and run a small inline bootstrap script.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https:; "
    "worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'"
)
DOCS_PATHS = ("/docs", "/redoc")
HSTS = "max-age=31536000; includeSubDomains"


def _headers(csp: str, hsts: bool) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"content-security-policy", csp.encode()),
    ]
    if hsts:
        headers.append((b"strict-transport-security", HSTS.encode()))
    return headers


class SecurityHeaders:
    """The headers for a response to ``path``: the docs' policy under the docs paths, else the API's."""

    def __init__(self, *, hsts: bool, docs_paths: Iterable[str] = DOCS_PATHS) -> None:
        self.docs_paths = tuple(docs_paths)
        self.api_headers = _headers(API_CSP, hsts)
        self.docs_headers = _headers(DOCS_CSP, hsts)

    def for_path(self, path: str) -> list[tuple[bytes, bytes]]:
        return self.docs_headers if path.startswith(self.docs_paths) else self.api_headers
