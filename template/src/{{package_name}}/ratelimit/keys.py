"""Who a request counts against: the configured API key it presents (by key id), else its client IP.

The key is read as authentication reads it (``X-API-Key``, else ``Authorization: Bearer``). Only a key
the service accepts earns its own budget: a client sending made-up keys counts against its IP, so it
cannot mint fresh budgets. X-Forwarded-For is believed only when the direct peer is a trusted proxy,
and then the client is the right-most address that is not itself a trusted proxy (left-most entries are
client-supplied and trivially forged). Limit storage (Redis) holds key ids, never credentials.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import Scope

from ..credentials import API_KEY_FIELD, AUTHORIZATION_FIELD, HashedKey, key_digest, presented_key

FORWARDED_FOR_HEADER = b"x-forwarded-for"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(spec: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 127.0.0.1"`` -> networks; ``*`` trusts everyone (only sensible behind a proxy)."""
    entries = [entry.strip() for entry in spec.split(",") if entry.strip()]
    if "*" in entries:
        return (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


class ClientKeys:
    def __init__(self, trusted_proxies: Iterable[Network], api_keys: Iterable[HashedKey] = ()) -> None:
        self.trusted_proxies = tuple(trusted_proxies)
        # A lookup by digest, not a comparison: authentication (constant time) happens elsewhere.
        self.key_ids = {key.sha256: key.id for key in api_keys}

    def __call__(self, scope: Scope) -> str:
        api_key = authorization = forwarded_for = None
        for name, value in scope["headers"]:
            if name == API_KEY_FIELD:
                api_key = value
            elif name == AUTHORIZATION_FIELD:
                authorization = value
            elif name == FORWARDED_FOR_HEADER:
                forwarded_for = value
        if self.key_ids and (api_key or authorization):
            key = presented_key(api_key, authorization)
            key_id = self.key_ids.get(key_digest(key)) if key else None
            if key_id is not None:
                return "key:" + key_id
        client = scope.get("client")
        peer = client[0] if client else "unknown"
        if forwarded_for is not None and self._is_trusted(peer):
            peer = self._client_behind_proxies(forwarded_for.decode("latin-1"), peer)
        return "ip:" + peer

    def _is_trusted(self, address: str) -> bool:
        if not self.trusted_proxies:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_proxies)

    def _client_behind_proxies(self, header: str, peer: str) -> str:
        for hop in reversed([part.strip() for part in header.split(",")]):
            if not self._is_trusted(hop):
                try:
                    return str(ipaddress.ip_address(hop))
                except ValueError:
                    return peer  # garbage in the header: fall back to the proxy we can see
        return peer
