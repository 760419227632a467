"""Keys the service accepts, configured as SHA-256 hashes: parsing, constant-time matching, new keys.

Settings hold ``id:sha256-hex`` entries, never keys, and several at once so keys can be rotated. A presented
key's hash is compared with EVERY configured hash in constant time, so timing reveals neither which key nor
how much of it matched. The id, never the key, may be logged. ``python -m <package>.credentials`` prints a
new key for scraping ``/metrics`` and its ``APP_METRICS_KEYS`` entry.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import secrets
from dataclasses import dataclass

API_KEY_HEADER = "X-API-Key"
# The raw ASGI header names (lower-case bytes) a key is presented in; see presented_key.
API_KEY_FIELD = API_KEY_HEADER.lower().encode()
AUTHORIZATION_FIELD = b"authorization"


@dataclass(frozen=True)
class HashedKey:
    id: str
    sha256: bytes


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_key_entries(entries: list[str]) -> tuple[HashedKey, ...]:
    """``"id:hex"`` entries (already validated by settings) -> keys."""
    keys = []
    for entry in entries:
        key_id, _, digest = entry.partition(":")
        keys.append(HashedKey(key_id, bytes.fromhex(digest)))
    return tuple(keys)


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def matching_key(key: str, keys: tuple[HashedKey, ...]) -> HashedKey | None:
    """The configured key ``key`` is, compared with every one of them (no early exit)."""
    digest = key_digest(key)
    matched: HashedKey | None = None
    for candidate in keys:
        if hmac.compare_digest(digest, candidate.sha256):
            matched = candidate
    return matched


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, or None."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def presented_key(api_key: bytes | None, authorization: bytes | None) -> str | None:
    """The key a request presents, from its raw ``X-API-Key`` and ``Authorization`` header values: the
    first if not empty, else the token of ``Authorization: Bearer``, else None. Authentication and the
    rate limiter's per-key budgets both ask this, so they agree on which key a request carries."""
    if api_key:
        return api_key.decode("latin-1")
    return bearer_token(authorization.decode("latin-1")) if authorization else None


def new_key(key_id: str) -> tuple[str, str]:
    """A fresh random key and the settings entry (``id:sha256``) that accepts it."""
    key = secrets.token_urlsafe(32)
    return key, f"{key_id}:{hash_key(key)}"


def print_new_key(key_id: str, *, kind: str, setting: str) -> None:
    key, entry = new_key(key_id)
    print(f"{kind} (give it to the client, store it nowhere else): {key}")
    print(f"{setting} entry (add it, comma-separated, to the service's settings): {entry}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Generate a key for scraping /metrics and the APP_METRICS_KEYS entry for it."
    )
    parser.add_argument("--id", default="prometheus", help="a name for the key, e.g. prometheus")
    args = parser.parse_args(argv)
    print_new_key(args.id, kind="Metrics key", setting="APP_METRICS_KEYS")


if __name__ == "__main__":
    main()
