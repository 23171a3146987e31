"""What the async stream client and the sync one generated from it share about one HTTP exchange, and the
two places where they differ by more than their keywords (written here by hand, once each, as httpcore
keeps its sync and async primitives):

- `SendClock`: when the request's head went out, from httpcore's `trace` extension, whose callback is a
  plain function for `httpx.Client` (`trace`) and a coroutine for `httpx.AsyncClient` (`atrace`);
- `ByteStream` / `AsyncByteStream`: the response body's bytes, each waited for until a deadline. A
  coroutine's wait is interrupted there (anyio); a blocking read cannot be, so the sync reader checks the
  deadline when bytes arrive, and a server that sends nothing fails after the socket's read timeout,
  which is never longer (`Timeouts.httpx`).

- `ahead_within` / `head_within`: the response's head (connecting, sending, status line and headers) as
  a whole within `Timeouts.head_s`. httpx bounds each read, not the head: a server that sends a header
  byte now and then would hold the request for ever. A coroutine's wait is cancelled at the deadline
  (anyio); the blocking twin cannot cancel a read, and keeps httpx's bound on each read.

`StreamHead` is a response whose headers have arrived: `OpenStream` (sync) and `AsyncOpenStream` add the
reading of its body.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from qwenops.stream.sse import ServerSentEvent, SSEDecoder

if TYPE_CHECKING:
    from qwenops.stream.request import StreamedRequest, Timeouts

__all__ = ["AsyncByteStream", "ByteStream", "SendClock", "Silent", "StreamHead", "TimedEvent", "ahead_within",
           "aread_small", "head_within", "is_encoded", "read_small"]


@dataclass(frozen=True, slots=True)
class TimedEvent:
    arrived_s: float
    event: ServerSentEvent


class SendClock:
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

    async def atrace(self, name: str, info: object) -> None:
        self.trace(name, info)


_Head = TypeVar("_Head", bound="StreamHead")


@dataclass
class StreamHead:
    """A response whose headers have arrived (any status: the caller decides what an error is).

    Its events end with `StreamTimeout` when no event completes for `timeouts.read_s` (keep-alive
    comments do not count) or the answer outlasts `timeouts.total_s`, and with `RunawayStream` after
    `max_events`."""

    status_code: int
    content_type: str
    content_encoding: str
    sent_s: float
    headers_s: float
    _response: Any
    _timeouts: Timeouts
    max_events: int | None = None
    decoder: SSEDecoder = field(default_factory=SSEDecoder)

    @classmethod
    def opened(cls: type[_Head], response: Any, sent_s: float, timeouts: Timeouts, request: StreamedRequest) -> _Head:
        return cls(
            status_code=response.status_code,
            content_type=response.headers.get("content-type", ""),
            content_encoding=response.headers.get("content-encoding", ""),
            sent_s=sent_s,
            headers_s=time.perf_counter(),
            _response=response,
            _timeouts=timeouts,
            max_events=request.max_events,
        )

    @property
    def is_event_stream(self) -> bool:
        return self.content_type.split(";", 1)[0].strip().lower() == "text/event-stream"

    @property
    def is_encoded(self) -> bool:
        """The body is compressed (a Content-Encoding other than identity), though the request asked for
        identity: it is refused, never inflated (`errors.encoded_stream`)."""
        return is_encoded(self.content_encoding)


def is_encoded(content_encoding: str) -> bool:
    return any(coding.strip().lower() not in ("", "identity") for coding in content_encoding.split(","))


async def aread_small(response: Any, cap: int) -> bytes | None:
    """A small answer's body (/v1/models), read as sent up to CAP bytes; None when it is larger or
    compressed (never inflated: a gzip bomb costs nothing). Ask with Accept-Encoding: identity. The
    caller bounds the whole read with a cancel scope (`anyio.move_on_after`)."""
    if is_encoded(response.headers.get("content-encoding", "")):
        return None
    body = bytearray()
    async for piece in response.aiter_raw():
        body += piece
        if len(body) > cap:
            return None
    return bytes(body)


def read_small(response: Any, cap: int) -> bytes | None:
    """`aread_small` for blocking code (the supervisor's probes, whose whole exchange is bounded by
    `httpread.SocketDeadline`, as a blocking read cannot be cancelled)."""
    if is_encoded(response.headers.get("content-encoding", "")):
        return None
    body = bytearray()
    for piece in response.iter_raw():
        body += piece
        if len(body) > cap:
            return None
    return bytes(body)


class HeadTimeout(Exception):
    """The response's head did not arrive, whole, within its deadline (raised by `ahead_within`)."""


@asynccontextmanager
async def ahead_within(exchange: AbstractAsyncContextManager[Any], seconds: float) -> AsyncIterator[Any]:
    """Enter EXCHANGE (`client.stream(...)`: it returns once the headers are in) within SECONDS, else
    `HeadTimeout`; the body is read after, outside this deadline."""
    import anyio

    entered = False
    with anyio.move_on_after(seconds):
        response = await exchange.__aenter__()
        entered = True
    if not entered:
        raise HeadTimeout
    try:
        yield response
    except BaseException as exc:
        if not await exchange.__aexit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        await exchange.__aexit__(None, None, None)


@contextmanager
def head_within(exchange: AbstractContextManager[Any], seconds: float) -> Iterator[Any]:
    """`ahead_within` for blocking code: a blocking read cannot be cancelled, so only each read of the head
    is bounded (httpx's read timeout); SECONDS is `ahead_within`'s signature."""
    with exchange as response:
        yield response


class Silent(Exception):
    """No bytes came before the deadline (raised by `AsyncByteStream.next` only)."""


class AsyncByteStream:
    """A response body's bytes for a coroutine: each waited for until a deadline, which interrupts the wait."""

    __slots__ = ("_chunks",)

    def __init__(self, response: Any) -> None:
        self._chunks = response.aiter_raw().__aiter__()  # as sent: an encoded body never gets here

    async def next(self, deadline: float | None) -> bytes | None:
        """The next bytes (None: the body ended); `Silent` at `deadline` (`time.perf_counter`). None: no
        deadline of ours, only the socket's read timeout (the caller knows it is the same moment)."""
        if deadline is None:
            try:
                return await self._chunks.__anext__()  # type: ignore[no-any-return]
            except StopAsyncIteration:
                return None
        import anyio

        with anyio.move_on_after(deadline - time.perf_counter()):
            try:
                chunk: bytes = await self._chunks.__anext__()
            except StopAsyncIteration:
                return None
            return chunk
        raise Silent

    async def aclose(self) -> None:
        await self._chunks.aclose()


class ByteStream:
    """A response body's bytes for blocking code: a blocking read cannot be interrupted, so `deadline` is
    not enforced here; the reader checks it when bytes arrive."""

    __slots__ = ("_chunks",)

    def __init__(self, response: Any) -> None:
        self._chunks = response.iter_raw()  # as sent: an encoded body never gets here

    def next(self, deadline: float | None) -> bytes | None:  # `deadline`: AsyncByteStream.next's signature
        chunk: bytes | None = next(self._chunks, None)
        return chunk

    def close(self) -> None:
        self._chunks.close()
