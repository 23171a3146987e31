"""Every error the stream client writes, in words: an HTTP error status and its body, a 200 that is not an
event stream, httpx's transport failures before the first byte (`transport_errors`) and after it
(`TransportCut`), silence, a runaway stream. Pure text and mapping, shared as it is by the async client
and the sync one generated from it; the error types themselves are `qwenops.errors`'."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from qwenops.errors import (
    BadInputError,
    HTTPStatusError,
    NotEventStream,
    NotHTTPError,
    RunawayStream,
    StreamInterrupted,
    StreamTimeout,
    UnreachableError,
)
from qwenops.stream.transport import HeadTimeout

if TYPE_CHECKING:
    from qwenops.stream.request import Endpoint, StreamedRequest, Timeouts
    from qwenops.stream.sse import EventTooLarge
    from qwenops.stream.transport import StreamHead

__all__ = [
    "MAX_ERROR_BODY",
    "TransportCut",
    "describe_body",
    "http_status_error",
    "not_event_stream",
    "oversized",
    "require_ok",
    "runaway",
    "silence",
    "transport_errors",
]

# Bodies of HTTP errors are kept for the message; an error page is never worth more than this.
MAX_ERROR_BODY = 4096

_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------- the answer's head


def describe_body(body: bytes, content_type: str = "") -> str:
    """What a body that was not what we asked for is, in a few words: an HTML page (and its title),
    a JSON document (a non-streamed completion, or its start), or the start of the text."""
    size = f"{len(body):,} bytes" + ("+" if len(body) >= MAX_ERROR_BODY else "")
    head = body.lstrip()[:64].lower()
    if "html" in content_type.lower() or head.startswith((b"<!doctype html", b"<html")):
        title = _TITLE.search(body)
        name = _one_line(title.group(1).decode("utf-8", "replace"), 60) if title else ""
        return f"an HTML page titled {name!r} ({size})" if name else f"an HTML page ({size})"
    text = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's limit
        parsed = None
    if isinstance(parsed, dict) and parsed.get("object") == "chat.completion":
        return f"a whole chat.completion as one JSON document ({size}): the server ignored stream: true"
    if parsed is not None:
        return f"a JSON document ({size}): {_one_line(text, 100)}"
    return f"{size} of text: {_one_line(text, 100)!r}" if text.strip() else "an empty body"


def http_status_error(status_code: int, body: bytes, *, model: str, content_type: str = "") -> HTTPStatusError:
    text = body[:MAX_ERROR_BODY].decode("utf-8", "replace")
    message = None
    try:
        parsed = json.loads(text)
        # OpenAI/vLLM: {"error": {"message": ...}}; FastAPI: {"detail": ...}
        err = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
        message = str(err.get("message") or err.get("detail") or err) if isinstance(err, dict) else str(err)
        message = _one_line(message, 300)
    except (ValueError, RecursionError):
        pass
    if message is None:
        # Not the JSON error an OpenAI-compatible server sends: a proxy's or another server's page.
        message = f"expected a JSON error, got {describe_body(body, content_type)}" if body.strip() else "(empty body)"
    hint = code = None
    if status_code == 401:
        code = "unauthorized"
        hint = "the server wants an API key (vLLM's --api-key): pass it as api_key"
    elif status_code == 404 and "model" in message.lower():
        code = "model_not_found"
        hint = f"the server does not serve a model named {model!r}; GET /v1/models lists the names it serves"
    return HTTPStatusError(f"HTTP {status_code}: {message}", status_code=status_code, body=text, hint=hint, code=code)


def not_event_stream(content_type: str, body: bytes) -> NotEventStream:
    seen = repr(content_type) if content_type else "no Content-Type"
    return NotEventStream(
        f"the server answered HTTP 200 with {seen}, not text/event-stream: {describe_body(body, content_type)}",
        hint="is base_url the root of an OpenAI-compatible server such as vLLM (no /v1, no other path)?",
    )


def encoded_stream(content_encoding: str) -> NotEventStream:
    return NotEventStream(
        f"the server compressed its answer (Content-Encoding {_one_line(content_encoding, 40)!r}) though qwenops "
        "asked for none (Accept-Encoding: identity); a compressed stream is not read",
        hint="vLLM does not compress: a proxy in front of it does; turn its compression off for "
             "text/event-stream (nginx: gzip off)",
    )


def require_ok(stream: StreamHead, body: bytes, request: StreamedRequest) -> None:
    """Raise what an answer that is not a 200 event stream, as sent, is (`body`: the start of its body)."""
    if stream.status_code != 200:
        raise http_status_error(stream.status_code, body, model=request.model, content_type=stream.content_type)
    if not stream.is_event_stream:
        raise not_event_stream(stream.content_type, body)
    if stream.is_encoded:
        raise encoded_stream(stream.content_encoding)


# --------------------------------------------------------------------------------------------- the answer's body


class TransportCut(Exception):
    """The transport lost the connection mid-body; `DeltaReader` turns it into `StreamInterrupted`."""


def silence(timeouts: Timeouts, sent_s: float, quiet_since: float, now: float) -> StreamTimeout:
    """No event since `quiet_since`, or the whole answer's deadline passed."""
    if timeouts.total_s is not None and now - sent_s >= timeouts.total_s:
        return StreamTimeout(
            f"the answer did not finish within {timeouts.total_s:g} s (deadline)",
            hint="raise the deadline if answers this long are expected",
        )
    return StreamTimeout(
        f"no event for {now - quiet_since:.1f} s (read timeout {timeouts.read_s:g} s; "
        "keep-alive comments do not count)",
        hint="raise the read timeout if the model is slow to start answering",
    )


def runaway(count: int, max_events: int | None) -> RunawayStream:
    return RunawayStream(
        f"{count} events and no data: [DONE], far more than max_tokens allows (at most {max_events}); "
        "stopped reading",
        hint="the server does not honour max_tokens or never ends the stream",
    )


def oversized(exc: EventTooLarge) -> RunawayStream:
    return RunawayStream(f"{exc}; stopped reading", hint="the server is not sending an event stream")


# --------------------------------------------------------------------------------------------- before the first byte


def _unreachable(endpoint: Endpoint, cause: object) -> UnreachableError:
    return UnreachableError(
        f"cannot connect to {endpoint.shown}: {endpoint.scrub(str(cause) or type(cause).__name__)}",
        field="base_url",
        hint="is the server running and listening there? start it with qwenops serve",
    )


_NOT_HTTP_BYTES = re.compile(r"bytearray\((b(['\"]).*\2)\)", re.DOTALL)


def _not_http(endpoint: Endpoint, exc: Exception) -> NotHTTPError:
    """h11's complaint about a status line ("illegal status line: bytearray(b'\\x15\\x03...')") in words."""
    reason = str(exc)
    found = _NOT_HTTP_BYTES.search(reason)
    if found is not None:
        try:
            first: bytes = ast.literal_eval(found.group(1))
            got = f"{len(first)} bytes that are not a status line: {first[:24]!r}{'…' if len(first) > 24 else ''}"
        except (ValueError, SyntaxError):
            got = "bytes that are not a status line"
    else:  # h11 says "illegal request line" when a peer sends a few bytes without a line break and closes
        got = "bytes that are not an HTTP status line"
    return NotHTTPError(
        f"{endpoint.shown} does not answer in HTTP: expected a status line such as 'HTTP/1.1 200 OK', got {got}",
        field="base_url",
        hint="is that the server's port? a server that wants TLS needs https://",
    )


@contextmanager
def transport_errors(endpoint: Endpoint, timeouts: Timeouts) -> Iterator[None]:
    """Map httpx's transport failures before the first byte to qwenops' typed errors (sync and async)."""
    import httpx

    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise _unreachable(endpoint, exc) from None
    except httpx.ReadTimeout:
        raise StreamTimeout(f"no response headers within {timeouts.httpx().read:g} s (read timeout)") from None
    except HeadTimeout:
        raise StreamTimeout(f"no whole response head within {timeouts.head_s:g} s (connect, write and read "
                            "timeouts together)") from None
    except httpx.RemoteProtocolError as exc:
        if "without sending" in str(exc) or "disconnected" in str(exc).lower():
            raise StreamInterrupted(
                f"the server closed the connection before answering: {endpoint.scrub(str(exc))}",
                text_so_far="",
                chunks=0,
            ) from None
        raise _not_http(endpoint, exc) from None
    except httpx.ReadError as exc:
        raise StreamInterrupted(
            f"the server closed the connection before answering: {endpoint.scrub(str(exc) or type(exc).__name__)}",
            text_so_far="",
            chunks=0,
        ) from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise BadInputError(
            f"{endpoint.shown!r} is not a usable URL: {endpoint.scrub(str(exc))}",
            field="base_url",
            hint="e.g. http://127.0.0.1:8000",
        ) from None
    except httpx.LocalProtocolError:
        # h11's message quotes the offending header, which would print the API key: leave it out.
        raise BadInputError(
            "the request is not valid HTTP: a header value is not one line of printable text",
            field="api_key",
            hint="check the API key",
        ) from None
    except httpx.TransportError as exc:
        # The rest (write errors and timeouts, pool timeouts, proxy errors) all mean that no answer can come
        # from there; the type names which one.
        raise _unreachable(endpoint, f"{type(exc).__name__}: {exc}") from None
