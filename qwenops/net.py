"""How a client reaches a server: the URL of one bound to a given host on this machine, and the rules a
server's root URL and its API key must meet (config, stream, gateway and troubleshoot share them)."""

from __future__ import annotations

import ipaddress
import re

from qwenops.errors import BadInputError
from qwenops.untrusted import mask_url

# A server bound to every interface is reached over loopback of the same family.
_WILDCARD = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def connect_host(bind_host: str) -> str:
    """The host part of a URL reaching a server bound to bind_host: IPv6 literals in brackets (RFC 3986)."""
    host = _WILDCARD.get(bind_host, bind_host)
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def proxy_allowed(url: str) -> bool:
    """Whether an HTTP client for URL may take its proxy from the environment (httpx's `trust_env`): never for a
    server on this machine (`this_machine`), nor for a host httpx keeps in non-ASCII form. A host-wide HTTP_PROXY
    would otherwise receive every prompt and the API key in clear, for a server on this very machine."""
    import httpx

    # The host httpx will connect to, not another parser's reading of the URL: httpx maps the IDNA full stops
    # (`127。0。0。1`, U+FF0E, U+FF61) to dots, so a reading by urlsplit said "elsewhere" while the request, key
    # included, went to 127.0.0.1 through the proxy (audit 9).
    try:
        host = httpx.URL(url).host.rstrip(".").lower()
    except (httpx.InvalidURL, ValueError, UnicodeError):
        return False
    if not host.isascii():
        return False
    # A name is resolved only where a proxy is configured, the one case where the answer changes what is sent.
    return not this_machine(host, resolve=_proxy_configured())


def _proxy_configured() -> bool:
    """Whether the environment names any proxy (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, any case), as httpx reads it."""
    import urllib.request

    return bool(urllib.request.getproxies_environment())


# IPv4 as C's inet_aton reads it (what connect() is given): 127.1, 2130706433, 0x7f.0.0.1, 0177.0.0.1.
_INET_ATON = re.compile(r"(?:0x[0-9a-f]+|[0-9]+)(?:\.(?:0x[0-9a-f]+|[0-9]+)){0,3}")


def this_machine(host: str, *, resolve: bool = False) -> bool:
    """Whether HOST (lower case, no trailing dot) reaches this machine, however it is spelt: `loopback_host`'s
    names and addresses, the unspecified addresses (0.0.0.0 and ::, which vLLM prints as the URL it runs on:
    connecting to them reaches this machine), IPv4 in every form inet_aton reads (127.1, 2130706433), an address
    of one of this machine's interfaces, and this machine's own name. With RESOLVE, any other name is resolved as
    the connection will resolve it (/etc/hosts, DNS): one that names any of those addresses is this machine
    (`ip6-localhost`, `localhost.localdomain`, a name /etc/hosts maps to 127.0.1.1: audit 10). Wider than
    `loopback_host` on purpose: it decides where a proxy may NOT see the key (audit 8), while the gateway's Host
    check wants the narrow canonical set."""
    import socket

    if loopback_host(host):
        return True
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
        if _INET_ATON.fullmatch(host):
            try:
                address = ipaddress.IPv4Address(socket.inet_aton(host))
            except OSError:  # a part out of range
                return False
    if address is not None:
        return _local_address(address)
    if not host:
        return False
    if host == socket.gethostname().rstrip(".").lower():
        return True
    return resolve and any(_local_address(found) for found in _resolved(host))


def _local_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        # a zone id (`fe80::1%eth0`) says which link, not which address: `ipaddress` compares it too, so this
        # machine's own link-local address with a zone was "elsewhere" (audit 11)
        address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified or address in _interface_addresses()


def _interface_addresses() -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses of this machine's network interfaces (psutil), read once per process."""
    if _INTERFACES:
        return _INTERFACES[0]
    import psutil

    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    try:
        for addresses in psutil.net_if_addrs().values():
            for entry in addresses:
                try:
                    found.add(ipaddress.ip_address(str(entry.address).split("%", 1)[0]))
                except ValueError:
                    continue  # a MAC address (AF_PACKET)
    except OSError:
        pass
    _INTERFACES.append(found)
    return found


_INTERFACES: list[set[ipaddress.IPv4Address | ipaddress.IPv6Address]] = []
RESOLVE_TIMEOUT_S = 2.0  # the proxy decision waits this long for a name; unresolved by then: not this machine


def _resolved(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """HOST's addresses as getaddrinfo gives them, within RESOLVE_TIMEOUT_S; [] when it fails or takes longer.
    Why a thread: getaddrinfo has no timeout of its own, and a DNS server that does not answer would hold every
    command that builds a client for the resolver's own timeouts (5 s x attempts); the thread is a daemon, left
    to finish on its own."""
    import socket
    import threading

    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return
        for info in infos:
            try:
                found.append(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
            except ValueError:
                continue

    worker = threading.Thread(target=lookup, name="qwenops-resolve", daemon=True)
    worker.start()
    worker.join(RESOLVE_TIMEOUT_S)
    return list(found) if not worker.is_alive() else []


def loopback_host(host: str) -> bool:
    """Whether HOST (lower case, no trailing dot) can only mean this machine: localhost and *.localhost (RFC 6761),
    127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104 (the IPv4-mapped form of the same)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def base_url(bind_host: str, port: int) -> str:
    return f"http://{connect_host(bind_host)}:{port}"


def normalize_base_url(url: str, *, field: str = "base_url") -> str:
    """The server's root URL as requests are built from it (no trailing / or /v1), or `BadInputError`
    naming `field` and saying what is wrong; the message shows the URL with its credentials masked."""
    from urllib.parse import urlsplit

    shown = mask_url(url)
    bad = next((c for c in url if not c.isprintable() or c.isspace()), None)
    if bad is not None:
        where = url.index(bad)
        what = "a line break" if bad in "\r\n" else "a space" if bad == " " else f"the character {bad!r}"
        raise BadInputError(
            f"{shown!r} has {what} at character {where + 1}", field=field, hint="remove it: a URL is one word"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- parsing the port is the check
    except ValueError as exc:  # an unclosed IPv6 bracket, a port that is not a number in range
        raise BadInputError(f"{shown!r} is not a URL: {exc}", field=field, hint="e.g. http://127.0.0.1:8000") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInputError(f"{shown!r} is not an http(s) URL", field=field, hint="e.g. http://127.0.0.1:8000")
    if parts.query or parts.fragment:
        raise BadInputError(
            f"{shown!r} has a ?query or #fragment", field=field, hint="give the server's root URL, e.g. http://host:8000"
        )
    return url.rstrip("/").removesuffix("/v1").rstrip("/")


_KEY_CHARS = re.compile(r"[\x21-\x7e]+")


def check_api_key(key: str) -> None:
    """An HTTP header carries printable ASCII; say where the key breaks that, without printing it."""
    if _KEY_CHARS.fullmatch(key):
        return
    where, bad = next((i, c) for i, c in enumerate(key) if not _KEY_CHARS.fullmatch(c))
    if "\udc80" <= bad <= "\udcff":  # how Python keeps a byte of the environment that is not UTF-8
        what = f"a byte that is not UTF-8 text (0x{ord(bad) - 0xDC00:02x})"
    elif bad in "\r\n":
        what = "a line break"
    elif bad.isspace():
        what = "a space"
    elif not bad.isprintable():
        what = "a control character"
    else:
        what = "not ASCII"
    raise BadInputError(
        f"the API key's character {where + 1} of {len(key)} is {what}; an HTTP header carries printable ASCII only",
        field="api_key",
        hint="set it to the key exactly as the server was given it (vLLM's --api-key)",
    )
