"""How a client on this machine reaches a server bound to a given host: one rule for every caller."""

from __future__ import annotations

# A server bound to every interface is reached over loopback of the same family.
_WILDCARD = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def connect_host(bind_host: str) -> str:
    """The host part of a URL reaching a server bound to bind_host: IPv6 literals in brackets (RFC 3986)."""
    host = _WILDCARD.get(bind_host, bind_host)
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def base_url(bind_host: str, port: int) -> str:
    return f"http://{connect_host(bind_host)}:{port}"
