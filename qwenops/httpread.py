"""One GET from a server qwenops reports on, with every cost bounded: the one reader that `status`,
`troubleshoot` (its live evidence and probes) and `doctor` share.

What a hostile or broken server can do, and what stops it:

- a body without end, a 3 GB body, a line of 100 MB: at most `max_bytes` bytes are kept, counted after
  Content-Encoding is undone, so a gzip or deflate bomb stops at the cap too (decoding is done here,
  a bounded piece at a time, never a whole network read inflated at once); encodings qwenops did not
  ask for (br, zstd, ...) are refused, not passed on as text;
- a byte every 2 s, headers that never end (slowloris), a server that accepts and never answers: the
  whole exchange, connection to last byte, has a total deadline. A timer shuts the connection's socket
  down when it passes, so a read blocked in any phase (TLS, headers, body) returns; between reads the
  deadline is checked on every chunk, and each read also has its own read timeout;
- redirects: followed only on the same scheme, host and port (at most `untrusted.MAX_REDIRECTS`, no
  loops); a redirect elsewhere is returned unfollowed, so the API key never goes to another host;
- the API key goes as `Authorization: Bearer` only to `base_url`'s scheme, host and port.

Failures are `QwenopsError`s with one line: nothing answers, no answer in time, too large or an
unreadable body is exit 3 (`UnreachableError`); a URL that cannot be a request is exit 2. Messages show
URLs with their credentials masked (`untrusted.mask_url`).
"""

from __future__ import annotations

import contextlib
import functools
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from qwenops import untrusted
from qwenops.errors import BadInputError, NotHTTPError, UnreachableError
from qwenops.net import proxy_allowed
from qwenops.untrusted import mask_url, printable

if TYPE_CHECKING:
    pass

DECODE_PIECE = 64 * 1024  # the most a decoder is asked to produce at once


class AnswerTooLarge(UnreachableError):
    """The server sent more than the cap for this answer (bytes decoded, or samples of /metrics)."""

    code = "answer_too_large"


class NoAnswerInTime(UnreachableError):
    """No byte within the read timeout, or no whole answer within the total deadline."""

    code = "timeout"


class UnreadableAnswer(UnreachableError):
    """An answer that broke off, or a body in an encoding that does not decode."""

    code = "unreadable_answer"


@dataclass(frozen=True)
class Reply:
    """What one GET got back. `body` is decoded (Content-Encoding undone) and at most the cap."""

    url: str  # the URL that answered (after same-host redirects); show it with mask_url
    status: int
    content_type: str  # the media type, lower case, without parameters ("" when none)
    body: bytes
    location: str | None = None  # a redirect that was not followed: where it pointed (absolute)
    not_followed: str | None = None  # why: "another host", "a loop", "more than N redirects"
    key_sent: bool = False

    @property
    def shown_url(self) -> str:
        return mask_url(self.url)

    @property
    def is_redirect(self) -> bool:
        return 300 <= self.status < 400

    @property
    def is_html(self) -> bool:
        head = self.body[:256].lstrip().lower()
        return self.content_type in ("text/html", "application/xhtml+xml") or head.startswith(
            (b"<!doctype html", b"<html", b"<head", b"<body", b"<!--"))

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def describe(self) -> str:
        """The answer in a few words, safe for a terminal: 'HTTP 302 to https://login.example/ (another
        host, not followed)', 'an HTML page titled "Sign in"', 'HTTP 500: {"detail": ...}'."""
        if self.is_redirect:
            where = f" to {_short(mask_url(self.location))}" if self.location else " without a Location"
            why = f" ({self.not_followed}, not followed)" if self.not_followed else ""
            return f"HTTP {self.status}{where}{why}"
        status = "" if self.status == 200 else f"HTTP {self.status} with "
        if self.is_html:
            title = _TITLE.search(self.body[:64 * 1024])
            name = _short(title.group(1).decode("utf-8", "replace"), 60) if title else ""
            page = f"an HTML page titled {name!r}" if name else "an HTML page"
            return f"{status}{page}"
        if not self.body.strip():
            return f"HTTP {self.status} with an empty body" if status else "an empty body"
        return f"{status or 'HTTP 200 with '}{_short(self.body[:400].decode('utf-8', 'replace'), 120)!r}"


_TITLE = re.compile(rb"<title[^>]*>([^<]{0,400})", re.IGNORECASE)


def _short(text: str, limit: int = 200) -> str:
    one = " ".join(printable(text, keep_newlines=False).split())
    return one if len(one) <= limit else one[: limit - 1] + "…"


def same_origin(url: str, other: str) -> bool:
    """Scheme, host and port: where a key may go and a redirect may be followed."""
    def origin(u: str) -> tuple[str, str, int]:
        parts = urlsplit(u)
        return parts.scheme, (parts.hostname or "").lower(), parts.port or (443 if parts.scheme == "https" else 80)

    try:
        return origin(url) == origin(other)
    except ValueError:
        return False


def get(base_url: str, path: str, *, api_key: str | None = None, max_bytes: int | None = None,
        deadline_s: float | None = None, ends_at: float | None = None, read_s: float | None = None,
        accept: str = "*/*", field: str = "--base-url") -> Reply:
    """GET base_url + path with every cost bounded (module docstring); `api_key` goes only to base_url's
    scheme, host and port. Defaults: `untrusted.MAX_HTTP_BODY_BYTES`, `HTTP_TOTAL_DEADLINE_S`,
    `HTTP_READ_TIMEOUT_S`, read when called. ENDS_AT (time.monotonic()) shares one deadline among
    several requests; DEADLINE_S is then the whole budget, as messages name it."""
    budget = untrusted.HTTP_TOTAL_DEADLINE_S if deadline_s is None else deadline_s
    deadline = time.monotonic() + budget if ends_at is None else ends_at
    cap = untrusted.MAX_HTTP_BODY_BYTES if max_bytes is None else max_bytes
    read = untrusted.HTTP_READ_TIMEOUT_S if read_s is None else read_s
    url = base_url + path
    seen = {url}
    for hop in range(untrusted.MAX_REDIRECTS + 1):
        key = api_key if api_key and same_origin(url, base_url) else None
        reply = _exchange(url, key=key, cap=cap, deadline=deadline, read_s=read, accept=accept, field=field,
                          budget_s=budget)
        if not reply.is_redirect or reply.location is None:
            return reply
        target = reply.location
        if not same_origin(target, base_url):
            why = "another host"
        elif target in seen:
            why = "a loop"
        elif hop == untrusted.MAX_REDIRECTS:
            why = f"more than {untrusted.MAX_REDIRECTS} redirects"
        else:
            seen.add(target)
            url = target
            continue
        return Reply(reply.url, reply.status, reply.content_type, b"", target, why, reply.key_sent)
    raise AssertionError("unreachable")  # the loop returns on its last hop


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One verifying context for every request (building one per client loads the CA file each time)."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class SocketDeadline:
    """A whole blocking httpx exchange within SECONDS: httpx bounds each read, not the exchange, and a
    blocking read cannot be cancelled, so a timer shuts the exchange's socket down when the deadline passes
    and the read blocked on it returns (an error; `expired` says why). Pass `trace` as the request's
    `trace` extension: it learns the socket when the connection is made, so the client must open a new
    connection for the exchange (no keep-alive). Hand-written because httpx has no total timeout."""

    def __init__(self, seconds: float) -> None:
        self.expired = threading.Event()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> SocketDeadline:
        self._timer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._timer.cancel()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        if event.endswith(("connect_tcp.complete", "start_tls.complete")):
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if isinstance(sock, socket.socket):
                self._sockets.append(sock)
                if self.expired.is_set():
                    self._shut(sock)

    def _expire(self) -> None:
        self.expired.set()
        for sock in list(self._sockets):
            self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's: wakes a blocked TLS read too


def _exchange(url: str, *, key: str | None, cap: int, deadline: float, read_s: float, accept: str,
              field: str, budget_s: float) -> Reply:
    import httpx

    shown = mask_url(url)
    left = deadline - time.monotonic()
    if left <= 0:
        raise NoAnswerInTime(f"no whole answer from {shown} within {_secs(budget_s)}", field=field)
    guard = SocketDeadline(left)
    expired = guard.expired
    headers = {"Accept": accept, "Accept-Encoding": "gzip, deflate"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    timeout = httpx.Timeout(connect=min(untrusted.HTTP_CONNECT_TIMEOUT_S, left), read=min(read_s, left),
                            write=min(read_s, left), pool=min(untrusted.HTTP_CONNECT_TIMEOUT_S, left))
    headers_seen = False
    try:
        with guard, httpx.Client(verify=_ssl_context(), timeout=timeout, follow_redirects=False,
                                 trust_env=proxy_allowed(url)) as client, \
                client.stream("GET", url, headers=headers, extensions={"trace": guard.trace}) as response:
            headers_seen = True
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if 300 <= response.status_code < 400 and "location" in response.headers:
                try:
                    location = urljoin(url, response.headers["location"].strip())
                except ValueError:
                    location = response.headers["location"]
                return Reply(url, response.status_code, kind, b"", location, key_sent=key is not None)
            coding = response.headers.get("content-encoding", "")
            body = _read_body(response.iter_raw(), coding, cap=cap, expired=expired, shown=shown, field=field)
            return Reply(url, response.status_code, kind, body, key_sent=key is not None)
    except (httpx.HTTPError, OSError) as exc:
        if expired.is_set():
            raise NoAnswerInTime(f"no whole answer from {shown} within {_secs(budget_s)} "
                                 f"(the most qwenops waits for it)", field=field) from None
        raise _failure(exc, shown, field, headers_seen, read_s) from None
    except UnicodeError as exc:  # a host name IDNA cannot encode ("a..b", a 64-letter label)
        raise BadInputError(f"{shown!r} has a host name that is not valid ({exc})", field=field) from None


def _secs(seconds: float) -> str:
    return f"{seconds:.3g} s"


def _failure(exc: Exception, shown: str, field: str, headers_seen: bool, read_s: float) -> Exception:
    import httpx

    reason = _short(str(exc), 160) or type(exc).__name__
    error: Exception
    if isinstance(exc, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        error = BadInputError(f"{shown!r} cannot be requested: {reason}", field=field)
    elif isinstance(exc, httpx.ConnectTimeout):
        error = UnreachableError(f"connecting to {shown} took longer than {_secs(untrusted.HTTP_CONNECT_TIMEOUT_S)}",
                                 field=field, hint="is the host right, and is a firewall dropping the connection?")
    elif isinstance(exc, httpx.ConnectError):
        error = UnreachableError(f"nothing answers at {shown} ({reason})", field=field,
                                 hint="is the server running? `qwenops serve` or `systemctl status`")
    elif isinstance(exc, httpx.TimeoutException):
        error = NoAnswerInTime(f"{shown} sent nothing for {_secs(read_s)}", field=field)
    elif isinstance(exc, httpx.RemoteProtocolError) and not headers_seen:
        error = NotHTTPError(f"{shown} does not answer in HTTP ({reason})", field=field,
                             hint="is the port right, and is it http, not https (or the reverse)?")
    elif isinstance(exc, httpx.LocalProtocolError):
        # h11's message quotes the header it refused, which would print the API key: left out.
        error = BadInputError(f"a request to {shown} cannot be sent: a header value is not one line of "
                              "printable text", field=field, hint="check QWENOPS_API_KEY")
    else:
        error = UnreadableAnswer(f"the answer from {shown} broke off: {reason}", field=field)
    return error


# ---------------------------------------------------------------------------------- Content-Encoding


class _Inflate:
    """zlib's decompressor, asked for at most a bounded piece at a time (gzip, deflate)."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self.raw = False
        self._z = zlib.decompressobj(zlib.MAX_WBITS | 16 if coding in ("gzip", "x-gzip") else zlib.MAX_WBITS)
        self._started = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        pending = data
        while pending and not self._z.eof:
            try:
                out = self._z.decompress(pending, DECODE_PIECE)
            except zlib.error:
                if self.coding == "deflate" and not self._started and not self.raw:
                    # "deflate" is meant to be zlib-wrapped; some servers send it raw (httpx accepts both)
                    self.raw, self._z = True, zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise
            self._started = True
            pending = self._z.unconsumed_tail
            if out:
                yield out


def _decoders(coding: str, shown: str, field: str) -> list[_Inflate]:
    codings = [c.strip().lower() for c in coding.split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    unknown = [c for c in codings if c not in ("gzip", "x-gzip", "deflate")]
    if unknown:
        raise UnreadableAnswer(f"{shown} answered in Content-Encoding {_short(unknown[0], 40)!r}, which qwenops "
                               f"did not ask for (it asks for gzip or deflate)", field=field)
    if len(codings) > 2:
        raise UnreadableAnswer(f"{shown} answered in {len(codings)} layers of Content-Encoding", field=field)
    return [_Inflate(c) for c in reversed(codings)]


def _read_body(raw: Iterator[bytes], coding: str, *, cap: int, expired: threading.Event, shown: str,
               field: str) -> bytes:
    decoders = _decoders(coding, shown, field)
    body = bytearray()
    received = 0

    def too_large() -> AnswerTooLarge:
        return AnswerTooLarge(f"{shown} sent more than {_size(cap)}, the most qwenops reads from it", field=field,
                              hint="a vLLM server's answers are far smaller: is this the right server?")

    def through(pieces: Iterator[bytes], stage: int) -> Iterator[bytes]:
        if stage == len(decoders):
            yield from pieces
            return
        for piece in pieces:
            yield from through(decoders[stage].feed(piece), stage + 1)

    try:
        for chunk in raw:
            if expired.is_set():
                raise OSError("deadline")  # _exchange names it
            received += len(chunk)
            if received > cap:  # raw bytes count too: an encoded stream that never yields text is no escape
                raise too_large()
            for piece in through(iter((chunk,)), 0):
                if len(body) + len(piece) > cap:
                    raise too_large()
                body += piece
    except zlib.error as exc:
        raise UnreadableAnswer(f"{shown} sent a body that does not decode as {coding.strip()!r} ({exc})",
                               field=field) from None
    return bytes(body)


def _size(n: int) -> str:
    from qwenops.units import MIB

    return f"{n / MIB:g} MiB" if n >= MIB else f"{n:,} bytes"
