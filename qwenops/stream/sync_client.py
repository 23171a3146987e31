# generated from qwenops/stream/async_client.py by scripts/unasync_stream.py; do not edit
# ruff: noqa: SIM117, UP028
"""The stream client's I/O, written once, for asyncio (any anyio backend): open a stream, read its events,
yield a chat's deltas.

`async_client.py` is the source; `sync_client.py` is generated from it by `scripts/unasync_stream.py`
(`async def` -> `def`, `await` dropped, `AsyncOpenStream` -> `OpenStream`, `astream_chat` ->
`stream_chat`, ...), so the sync client is this code, not a twin kept by hand, and
tests/unit/test_stream_sync_client.py fails when the committed sync file is not what the script writes.
Edit async_client.py, then run the script.

What is not I/O is shared, not generated: the request and the endpoint (`qwenops.stream.request`), the
error text and httpx's error mapping (`qwenops.stream.errors`), the SSE parser and the chunk decoder; the
two places where sync and async differ by more than their keywords are `qwenops.stream.transport`'s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from typing import TYPE_CHECKING, Any

from qwenops.net import proxy_allowed
from qwenops.stream.chunks import ChatDelta, DeltaReader
from qwenops.stream.errors import (
    MAX_ERROR_BODY,
    TransportCut,
    oversized,
    require_ok,
    runaway,
    silence,
    transport_errors,
)
from qwenops.stream.request import ChatRequest, Endpoint, Message, StreamedRequest, Timeouts, chat_request
from qwenops.stream.sse import EventTooLarge
from qwenops.stream.transport import ByteStream, SendClock, Silent, StreamHead, TimedEvent, head_within

if TYPE_CHECKING:
    import httpx

    from qwenops.stream.resume import Resume

__all__ = ["OpenStream", "open_chat_stream", "open_stream", "read_events", "stream_chat"]


class OpenStream(StreamHead):
    """A response whose headers have arrived; its events (`events()` in the sync client, `aevents()` in the
    async one) follow."""

    def read_body(self) -> bytes:
        """The start of a body that is not a stream (an error page): at most 4 KiB as sent (never inflated)."""
        body = b""
        for chunk in self._response.iter_raw():
            body += chunk
            if len(body) >= MAX_ERROR_BODY:
                break
        return body[:MAX_ERROR_BODY]

    def events(self) -> Generator[TimedEvent, None]:
        """Events as they complete, each with the time its bytes arrived; a cut connection (`TransportCut`),
        silence or a passed deadline (`StreamTimeout`) or a runaway (`RunawayStream`) ends the iteration."""
        import httpx

        clock = time.perf_counter
        decoder = self.decoder
        idle = self._timeouts.read_s
        end = math.inf if self._timeouts.total_s is None else self.sent_s + self._timeouts.total_s
        limit = self.max_events if self.max_events is not None else math.inf
        quiet_since = self.headers_s
        count = 0
        chunks = ByteStream(self._response)
        # The next read needs a deadline of its own only when the socket's read timeout (`read_s` too:
        # Timeouts.httpx) would end it later than `quiet_since + idle`: a total deadline, or bytes since the
        # last event. Otherwise the two differ by the consumer's own work since then, and a timer per read
        # (a cancel scope) was about a tenth of a paced relay's CPU per token (docs/benchmarks.md).
        timed = end != math.inf
        try:
            while True:
                chunk = chunks.next(min(quiet_since + idle, end) if timed else None)
                if chunk is None:
                    break
                now = clock()
                events = decoder.feed(chunk)
                if events:
                    quiet_since = now
                    count += len(events)
                    for event in events:
                        yield TimedEvent(now, event)
                    if count > limit:
                        raise runaway(count, self.max_events)
                if now - quiet_since > idle or now > end:
                    raise silence(self._timeouts, self.sent_s, quiet_since, now)
                timed = end != math.inf or not events or decoder.has_partial_event
        except (Silent, httpx.ReadTimeout):
            raise silence(self._timeouts, self.sent_s, quiet_since, clock()) from None
        except httpx.TransportError as exc:  # after the headers, any transport failure cuts the answer
            raise TransportCut(str(exc) or type(exc).__name__) from None
        except EventTooLarge as exc:
            raise oversized(exc) from None
        finally:
            chunks.close()
        decoder.close()


@contextmanager
def open_stream(
    client: httpx.Client, endpoint: Endpoint, url: str, request: StreamedRequest, timeouts: Timeouts
) -> Iterator[OpenStream]:
    """POST `request` to `url` (a path of `endpoint`: chat or plain completions) and yield the open stream."""
    body, headers, clock = request.encoded, endpoint.headers(), SendClock()
    handed_s = time.perf_counter()
    with transport_errors(endpoint, timeouts):
        with head_within(client.stream(
            "POST", url, content=body, headers=headers, timeout=timeouts.httpx(),
            extensions={"trace": clock.trace},
        ), timeouts.head_s) as response:
            yield OpenStream.opened(response, clock.sent_s or handed_s, timeouts, request)


@contextmanager
def open_chat_stream(
    client: httpx.Client, endpoint: Endpoint, request: ChatRequest, timeouts: Timeouts
) -> Iterator[OpenStream]:
    """Send the chat request; yield the open stream (any status: the caller decides what an error is)."""
    with open_stream(client, endpoint, endpoint.url, request, timeouts) as stream:
        yield stream


def read_events(
    client: httpx.Client, endpoint: Endpoint, url: str, request: StreamedRequest, timeouts: Timeouts, *,
    reader: DeltaReader,
) -> Generator[TimedEvent, None]:
    """The events of one request, or its typed error: an HTTP error status, a body that is not an event
    stream, and (through `reader`, which has read the events) a cut or an end without `data: [DONE]`."""
    with open_stream(client, endpoint, url, request, timeouts) as stream:
        if stream.status_code != 200 or not stream.is_event_stream or stream.is_encoded:
            require_ok(stream, stream.read_body(), request)
        try:
            for timed in stream.events():
                yield timed
        except TransportCut as cut:
            raise reader.interrupted(f"the connection broke ({endpoint.scrub(str(cut))})") from None
    reader.finish()


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
    timeouts: Timeouts = Timeouts(),  # noqa: B008 -- frozen, so one shared default is safe
    client: httpx.Client | None = None,
    resume: Resume | None = None,
) -> Generator[ChatDelta, None]:
    """Yield the deltas of one streamed chat completion; raise a typed `StreamError` if it fails.
    `stream_chat` blocks; `astream_chat` yields the same deltas and errors without blocking the event loop.

    Everything is explicit: the server's root URL, the served model name, the API key (sent only when
    given, to `base_url` only), and the sampling (left out: the server's defaults). Pass `client` (an
    `httpx.Client`, or an `httpx.AsyncClient` for `astream_chat`) to reuse connections across calls.

    `resume=Resume()` continues a stream cut after its first token from the token ids already delivered
    (one delta with `resumed` set marks where; see `qwenops.stream.resume`). Resume is async code:
    `stream_chat` runs it on an event loop in a worker thread, so it takes no sync `client` there.
    """
    import httpx

    endpoint = Endpoint(base_url=base_url, api_key=api_key)
    request = chat_request(messages, model=model, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                           include_usage=include_usage, extra_body=extra_body)
    if resume is not None:
        from qwenops.stream.resume import resumed

        with closing(resumed(client, endpoint, request, timeouts, resume)) as continued:
            for piece in continued:
                yield piece
        return
    owned = client is None
    http = client if client is not None else httpx.Client(trust_env=proxy_allowed(endpoint.base_url))
    try:
        reader = DeltaReader()
        with closing(read_events(http, endpoint, endpoint.url, request, timeouts, reader=reader)) as events:
            for timed in events:
                delta = reader.read(timed.event.data, timed.arrived_s)
                if delta is not None:
                    yield delta
    finally:
        if owned:
            http.close()
