"""Stream chat completions from an OpenAI-compatible server (vLLM), sync and async, on httpx.

    for delta in stream_chat([{"role": "user", "content": "Say hello."}],
                             base_url="http://127.0.0.1:8000", model="Qwen3-14B"):
        print(delta.content, end="", flush=True)

The caller says where to send, with which key and which parameters: this module reads no settings and
no profile, so a key goes only where its caller sends it (`qwenops smoke-stream` resolves its own
defaults, see `qwenops.smoke.run.resolve_options`).

What the article's hand-rolled clients get wrong and this gets right:
- events are parsed by the WHATWG rules (`qwenops.stream.sse`), not by `line.startswith("data: ")`;
- connect and read timeouts are separate: a 14B model may think for a while, a dead host must fail fast;
  keep-alive comments are not progress, and a whole answer can have a deadline;
- every failure is its own typed error, never swallowed: an HTTP error status (`HTTPStatusError`, with
  status and body), an error sent inside a 200 stream (`InBandError`, as vLLM does when its engine dies),
  a connection cut before `data: [DONE]` (`StreamInterrupted`, with the text received so far), silence
  longer than the read timeout (`StreamTimeout`), no server at all (`UnreachableError`);
- a server that never ends the answer is stopped (`RunawayStream`), and no event may grow without bound;
- each delta carries the monotonic time its bytes arrived, so latency metrics need no second clock;
- the async variant never blocks the event loop.

Layers, so the smoke test can check the raw stream and the library can hide it: `ChatRequest` builds the
body; `open_chat_stream` / `aopen_chat_stream` send it and yield `TimedEvent`s; `DeltaReader`
(`qwenops.stream.chunks`, sans-IO) turns events into `ChatDelta`s and raises the in-band and
interruption errors; `stream_chat` / `astream_chat` put the three together.
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

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
from qwenops.net import check_api_key, normalize_base_url
from qwenops.stream.chunks import DONE, ChatDelta, DeltaReader, Usage
from qwenops.stream.sse import EventTooLarge, ServerSentEvent, SSEDecoder
from qwenops.untrusted import USERINFO, mask_url

if TYPE_CHECKING:
    import httpx

    from qwenops.stream.resume import Resume

__all__ = [
    "DONE",
    "ChatDelta",
    "ChatRequest",
    "DeltaReader",
    "Endpoint",
    "NotEventStream",
    "NotHTTPError",
    "OpenStream",
    "RunawayStream",
    "TimedEvent",
    "Timeouts",
    "TransportCut",
    "Usage",
    "aopen_chat_stream",
    "astream_chat",
    "check_api_key",
    "describe_body",
    "http_status_error",
    "normalize_base_url",
    "not_event_stream",
    "open_chat_stream",
    "redact_url",
    "stream_chat",
]

# Bodies of HTTP errors are kept for the message; an error page is never worth more than this.
_MAX_ERROR_BODY = 4096

Message = Mapping[str, Any]


# --------------------------------------------------------------------------------------------- values


def _seconds(value: float | None, name: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise BadInputError(f"must be a finite number of seconds > 0, got {value!r}", field=f"timeouts.{name}")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. `read_s` is the longest wait for the next event (keep-alive comments and parts of an
    event are not progress), not a limit on the whole answer; `total_s` is that limit, from sending
    the request to `data: [DONE]` (None: none)."""

    connect_s: float = 5.0
    read_s: float = 60.0
    write_s: float = 10.0
    total_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("connect_s", "read_s", "write_s"):
            _seconds(getattr(self, name), name)
        _seconds(self.total_s, "total_s", optional=True)

    def httpx(self) -> httpx.Timeout:
        import httpx

        # One socket read may never wait longer than the whole answer may take.
        read = self.read_s if self.total_s is None else min(self.read_s, self.total_s)
        return httpx.Timeout(connect=self.connect_s, read=read, write=self.write_s, pool=self.connect_s)


@dataclass(frozen=True, slots=True)
class TimedEvent:
    arrived_s: float
    event: ServerSentEvent


@dataclass(frozen=True)
class ChatRequest:
    """The body of `POST /v1/chat/completions` with `stream: true`."""

    messages: Sequence[Message]
    model: str
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    include_usage: bool = True
    extra_body: Mapping[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": list(self.messages), "stream": True}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.top_p is not None:
            body["top_p"] = self.top_p
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.include_usage:
            body["stream_options"] = {"include_usage": True}
        body.update(self.extra_body)
        return body

    @cached_property
    def encoded(self) -> bytes:
        """The body as sent, encoded once (a request sent N times is not serialised N times)."""
        return json.dumps(self.body(), ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()

    @property
    def max_events(self) -> int | None:
        """Events beyond which a stream is a runaway: a server that honours `max_tokens` sends at most one
        per token plus the role, closing and usage chunks and `[DONE]`; twice that and more is not slow
        generation, it is a server that does not stop (None: no `max_tokens`, no bound known)."""
        return None if self.max_tokens is None else 2 * self.max_tokens + 8


# --------------------------------------------------------------------------------------------- URLs

# The one masking rule lives with the other untrusted-input rules; the stream library re-exports it.
redact_url = mask_url


@dataclass(frozen=True)
class Endpoint:
    """Where and how to send: the server's root URL (a trailing /v1 is dropped) and the API key, if the
    server wants one. Both are checked here, so a bad value is `BadInputError` before anything is sent."""

    base_url: str
    api_key: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", normalize_base_url(self.base_url))
        if self.api_key:
            check_api_key(self.api_key)

    @property
    def shown(self) -> str:
        """The base URL as messages show it: credentials masked."""
        return redact_url(self.base_url)

    @property
    def url(self) -> str:
        return self.base_url + "/v1/chat/completions"

    @property
    def completions_url(self) -> str:
        return self.base_url + "/v1/completions"

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def scrub(self, text: str) -> str:
        """`text` (a transport's message) without the URL's credentials or the key in it."""
        text = text.replace(self.base_url, self.shown)
        userinfo = USERINFO.match(self.base_url)
        if userinfo is not None:
            text = text.replace(userinfo.group(2) + "@", "***@")
        if self.api_key:
            text = text.replace(self.api_key, "***")
        return text


_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_body(body: bytes, content_type: str = "") -> str:
    """What a body that was not what we asked for is, in a few words: an HTML page (and its title),
    a JSON document (a non-streamed completion, or its start), or the start of the text."""
    size = f"{len(body):,} bytes" + ("+" if len(body) >= _MAX_ERROR_BODY else "")
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
    text = body[:_MAX_ERROR_BODY].decode("utf-8", "replace")
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


# --------------------------------------------------------------------------------------------- transport


class TransportCut(Exception):
    """The transport lost the connection mid-body; `DeltaReader` turns it into `StreamInterrupted`."""


@dataclass
class OpenStream:
    """A response whose headers have arrived; `events()` / `aevents()` yield what follows.

    Both end with `StreamTimeout` when no event completes for `timeouts.read_s` (keep-alive comments do
    not count) or the answer outlasts `timeouts.total_s`, and with `RunawayStream` after `max_events`."""

    status_code: int
    content_type: str
    sent_s: float
    headers_s: float
    _response: Any
    _timeouts: Timeouts
    max_events: int | None = None
    decoder: SSEDecoder = field(default_factory=SSEDecoder)

    @property
    def is_event_stream(self) -> bool:
        return self.content_type.split(";", 1)[0].strip().lower() == "text/event-stream"

    def read_body(self) -> bytes:
        """The start of a body that is not a stream (an error page): at most 4 KiB, read as it comes."""
        body = b""
        for chunk in self._response.iter_bytes():
            body += chunk
            if len(body) >= _MAX_ERROR_BODY:
                break
        return body[:_MAX_ERROR_BODY]

    async def aread_body(self) -> bytes:
        body = b""
        async for chunk in self._response.aiter_bytes():
            body += chunk
            if len(body) >= _MAX_ERROR_BODY:
                break
        return body[:_MAX_ERROR_BODY]

    def _silence(self, quiet_since: float, now: float) -> StreamTimeout:
        if self._timeouts.total_s is not None and now - self.sent_s >= self._timeouts.total_s:
            return StreamTimeout(
                f"the answer did not finish within {self._timeouts.total_s:g} s (deadline)",
                hint="raise the deadline if answers this long are expected",
            )
        return StreamTimeout(
            f"no event for {now - quiet_since:.1f} s (read timeout {self._timeouts.read_s:g} s; "
            "keep-alive comments do not count)",
            hint="raise the read timeout if the model is slow to start answering",
        )

    def _runaway(self, count: int) -> RunawayStream:
        return RunawayStream(
            f"{count} events and no data: [DONE], far more than max_tokens allows (at most {self.max_events}); "
            "stopped reading",
            hint="the server does not honour max_tokens or never ends the stream",
        )

    def _oversized(self, exc: EventTooLarge) -> RunawayStream:
        return RunawayStream(f"{exc}; stopped reading", hint="the server is not sending an event stream")

    def events(self) -> Generator[TimedEvent, None, None]:
        """Events as they complete; a cut connection or a timeout ends the iteration with an error.

        Silence and the deadline are checked when bytes arrive (a blocking read cannot be interrupted),
        so a server that sends nothing fails after the socket's read timeout, which is never longer."""
        import httpx

        clock = time.perf_counter
        decoder = self.decoder
        idle = self._timeouts.read_s
        end = math.inf if self._timeouts.total_s is None else self.sent_s + self._timeouts.total_s
        limit = self.max_events if self.max_events is not None else math.inf
        quiet_since = self.headers_s
        count = 0
        try:
            for chunk in self._response.iter_bytes():
                now = clock()
                events = decoder.feed(chunk)
                if events:
                    quiet_since = now
                    count += len(events)
                    for event in events:
                        yield TimedEvent(now, event)
                    if count > limit:
                        raise self._runaway(count)
                if now - quiet_since > idle or now > end:
                    raise self._silence(quiet_since, now)
        except httpx.ReadTimeout:
            raise self._silence(quiet_since, clock()) from None
        except httpx.TransportError as exc:  # after the headers, any transport failure cuts the answer
            raise TransportCut(str(exc) or type(exc).__name__) from None
        except EventTooLarge as exc:
            raise self._oversized(exc) from None
        decoder.close()

    async def aevents(self) -> AsyncGenerator[TimedEvent, None]:
        """`events()` for asyncio (any anyio backend): here silence and the deadline interrupt the read."""
        import anyio
        import httpx

        clock = time.perf_counter
        decoder = self.decoder
        idle = self._timeouts.read_s
        end = math.inf if self._timeouts.total_s is None else self.sent_s + self._timeouts.total_s
        limit = self.max_events if self.max_events is not None else math.inf
        quiet_since = self.headers_s
        count = 0
        chunks = self._response.aiter_bytes().__aiter__()
        try:
            while True:
                with anyio.move_on_after(min(quiet_since + idle, end) - clock()) as waiting:
                    try:
                        chunk = await chunks.__anext__()
                    except StopAsyncIteration:
                        break
                now = clock()
                if waiting.cancelled_caught:
                    raise self._silence(quiet_since, now)
                events = decoder.feed(chunk)
                if events:
                    quiet_since = now
                    count += len(events)
                    for event in events:
                        yield TimedEvent(now, event)
                    if count > limit:
                        raise self._runaway(count)
        except httpx.ReadTimeout:
            raise self._silence(quiet_since, clock()) from None
        except httpx.TransportError as exc:  # after the headers, any transport failure cuts the answer
            raise TransportCut(str(exc) or type(exc).__name__) from None
        except EventTooLarge as exc:
            raise self._oversized(exc) from None
        finally:
            await chunks.aclose()
        decoder.close()


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
def _transport_errors(endpoint: Endpoint, timeouts: Timeouts) -> Iterator[None]:
    """Map httpx's transport failures before the first byte to qwenops' typed errors (sync and async)."""
    import httpx

    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise _unreachable(endpoint, exc) from None
    except httpx.ReadTimeout:
        raise StreamTimeout(f"no response headers within {timeouts.httpx().read:g} s (read timeout)") from None
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


def _opened(response: httpx.Response, sent_s: float, timeouts: Timeouts, request: StreamedRequest) -> OpenStream:
    return OpenStream(
        status_code=response.status_code,
        content_type=response.headers.get("content-type", ""),
        sent_s=sent_s,
        headers_s=time.perf_counter(),
        _response=response,
        _timeouts=timeouts,
        max_events=request.max_events,
    )


class _SendClock:
    """When the request's head starts going out on the connection, from httpcore's `trace` extension.

    That is the `sent` of every latency (README "Metrics and their formulas"): building the request in
    Python and waiting for a connection (opening one, a TLS handshake, the pool) are not part of what
    the server took to answer. Without trace events (a transport that sends none) the time just before
    the request was handed to httpx stands in."""

    __slots__ = ("sent_s",)

    def __init__(self) -> None:
        self.sent_s: float | None = None

    def trace(self, name: str, _info: object) -> None:
        if self.sent_s is None and name.endswith("send_request_headers.started"):
            self.sent_s = time.perf_counter()

    async def atrace(self, name: str, _info: object) -> None:
        if self.sent_s is None and name.endswith("send_request_headers.started"):
            self.sent_s = time.perf_counter()


@contextmanager
def open_chat_stream(
    client: httpx.Client, endpoint: Endpoint, request: ChatRequest, timeouts: Timeouts
) -> Iterator[OpenStream]:
    """Send the request; yield the open stream (any status: the caller decides what an error is)."""
    body, headers, clock = request.encoded, endpoint.headers(), _SendClock()
    handed_s = time.perf_counter()
    with _transport_errors(endpoint, timeouts), client.stream(
        "POST", endpoint.url, content=body, headers=headers, timeout=timeouts.httpx(),
        extensions={"trace": clock.trace},
    ) as response:
        yield _opened(response, clock.sent_s or handed_s, timeouts, request)


@asynccontextmanager
async def aopen_chat_stream(
    client: httpx.AsyncClient, endpoint: Endpoint, request: ChatRequest, timeouts: Timeouts
) -> AsyncIterator[OpenStream]:
    async with aopen_stream(client, endpoint, endpoint.url, request, timeouts) as stream:
        yield stream


class StreamedRequest(Protocol):
    """What `aopen_stream` sends: the encoded body, the served model's name (for error messages) and the
    event count beyond which the stream is a runaway."""

    @property
    def encoded(self) -> bytes: ...
    @property
    def model(self) -> str: ...
    @property
    def max_events(self) -> int | None: ...


@asynccontextmanager
async def aopen_stream(
    client: httpx.AsyncClient, endpoint: Endpoint, url: str, request: StreamedRequest, timeouts: Timeouts
) -> AsyncIterator[OpenStream]:
    """POST `request` to `url` (a path of `endpoint`: chat or plain completions) and yield the open stream."""
    body, headers, clock = request.encoded, endpoint.headers(), _SendClock()
    handed_s = time.perf_counter()
    with _transport_errors(endpoint, timeouts):
        async with client.stream(
            "POST", url, content=body, headers=headers, timeout=timeouts.httpx(),
            extensions={"trace": clock.atrace},
        ) as response:
            yield _opened(response, clock.sent_s or handed_s, timeouts, request)


def _require_ok(stream: OpenStream, body: bytes, request: StreamedRequest) -> None:
    if stream.status_code != 200:
        raise http_status_error(stream.status_code, body, model=request.model, content_type=stream.content_type)
    if not stream.is_event_stream:
        raise not_event_stream(stream.content_type, body)


# --------------------------------------------------------------------------------------------- public API


def _request(
    messages: Sequence[Message], *, model: str, temperature: float | None, top_p: float | None,
    max_tokens: int | None, include_usage: bool, extra_body: Mapping[str, Any] | None,
) -> ChatRequest:
    if not model:
        raise BadInputError("must name the served model", field="model")
    return ChatRequest(
        messages=messages, model=model, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
        include_usage=include_usage, extra_body=dict(extra_body or {}),
    )


def stream_chat(
    messages: Sequence[Message],
    *,
    base_url: str,
    model: str,
    api_key: str | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    max_tokens: int | None = None,
    include_usage: bool = True,
    extra_body: Mapping[str, Any] | None = None,
    timeouts: Timeouts = Timeouts(),  # frozen, so one shared default is safe
    client: httpx.Client | None = None,
    resume: Resume | None = None,
) -> Iterator[ChatDelta]:
    """Yield the deltas of one streamed chat completion; raise a typed `StreamError` if it fails.

    Everything is explicit: the server's root URL, the served model name, the API key (sent only when
    given, to `base_url` only), and the sampling (left out: the server's defaults). Pass `client` to
    reuse connections across calls.

    `resume=Resume()` continues a stream cut after its first token from the token ids already delivered
    (`qwenops.stream.resume`); that runs `astream_chat` on an event loop in a worker thread, so it takes
    no sync `client`.
    """
    import httpx

    if resume is not None:
        if client is not None:
            raise BadInputError(
                "resume runs the async client in a worker thread and cannot use an httpx.Client",
                field="client", hint="pass no client, or use astream_chat with an httpx.AsyncClient",
            )
        yield from _blocking(astream_chat(
            messages, base_url=base_url, model=model, api_key=api_key, temperature=temperature, top_p=top_p,
            max_tokens=max_tokens, include_usage=include_usage, extra_body=extra_body, timeouts=timeouts,
            resume=resume,
        ))
        return
    endpoint = Endpoint(base_url=base_url, api_key=api_key)
    request = _request(messages, model=model, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                       include_usage=include_usage, extra_body=extra_body)
    owned = client is None
    http = client if client is not None else httpx.Client()
    try:
        with open_chat_stream(http, endpoint, request, timeouts) as stream:
            if stream.status_code != 200 or not stream.is_event_stream:
                _require_ok(stream, stream.read_body(), request)
            reader = DeltaReader()
            try:
                for timed in stream.events():
                    delta = reader.read(timed.event.data, timed.arrived_s)
                    if delta is not None:
                        yield delta
            except TransportCut as cut:
                raise reader.interrupted(f"the connection broke ({endpoint.scrub(str(cut))})") from None
            reader.finish()
    finally:
        if owned:
            http.close()


async def astream_chat(
    messages: Sequence[Message],
    *,
    base_url: str,
    model: str,
    api_key: str | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    max_tokens: int | None = None,
    include_usage: bool = True,
    extra_body: Mapping[str, Any] | None = None,
    timeouts: Timeouts = Timeouts(),  # frozen, so one shared default is safe
    client: httpx.AsyncClient | None = None,
    resume: Resume | None = None,
) -> AsyncGenerator[ChatDelta, None]:
    """`stream_chat` for asyncio: the same deltas and errors, without blocking the event loop.

    With `resume`, a stream cut after its first token is continued from the token ids already delivered
    (one delta with `resumed` set marks where); see `qwenops.stream.resume`."""
    import httpx

    endpoint = Endpoint(base_url=base_url, api_key=api_key)
    request = _request(messages, model=model, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                       include_usage=include_usage, extra_body=extra_body)
    owned = client is None
    http = client if client is not None else httpx.AsyncClient()
    if resume is not None:
        from qwenops.stream.resume import aresume_chat

        try:
            async with contextlib.aclosing(aresume_chat(http, endpoint, request, timeouts, resume)) as deltas:
                async for resumed in deltas:
                    yield resumed
        finally:
            if owned:
                await http.aclose()
        return
    try:
        async with aopen_chat_stream(http, endpoint, request, timeouts) as stream:
            if stream.status_code != 200 or not stream.is_event_stream:
                _require_ok(stream, await stream.aread_body(), request)
            reader = DeltaReader()
            try:
                async for timed in stream.aevents():
                    delta = reader.read(timed.event.data, timed.arrived_s)
                    if delta is not None:
                        yield delta
            except TransportCut as cut:
                raise reader.interrupted(f"the connection broke ({endpoint.scrub(str(cut))})") from None
            reader.finish()
    finally:
        if owned:
            await http.aclose()


def _blocking(deltas: AsyncGenerator[ChatDelta, None]) -> Generator[ChatDelta, None, None]:
    """An async generator's items, for a sync caller: its event loop runs in a worker thread (anyio's
    blocking portal), so the sync API wraps the async core instead of keeping a twin of it."""
    from anyio.from_thread import start_blocking_portal

    async def step() -> ChatDelta:
        return await deltas.__anext__()

    with start_blocking_portal() as portal:
        try:
            while True:
                try:
                    delta = portal.call(step)
                except StopAsyncIteration:
                    return
                yield delta
        finally:
            portal.call(deltas.aclose)
