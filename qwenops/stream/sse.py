"""Server-sent events: an incremental, byte-level parser of the WHATWG `text/event-stream` format.

Hand-written, not httpx-sse (0.4.3), because that library misses three rules of the spec
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation) that
tests/unit/test_sse.py pins: it keeps a leading U+FEFF BOM as part of the first field name, it dispatches
an event whose data buffer is empty (`event: x` + blank line), and it accepts `retry: +5` or `retry: 1_0`
through `int()` (fed tests/data/sse/synthetic, httpx-sse fails `bom`, `bom_only_first`,
`empty_data_no_dispatch` and `retry_not_digits`). It also decodes text before splitting lines, a str
copy per read; working on bytes and decoding each field once is part of what lets the client parse
faster than `openai`'s (benchmarks/stream_client.py).

The parser is sans-IO: feed it whatever byte chunks the socket gave, in any split, and it returns the
events those bytes completed. Any chunking of the same bytes yields the same events (a hypothesis test
proves it), which is what makes arrival timestamps per chunk trustworthy.

The spec sets no size limit; this parser does (`max_event_bytes`, default 8 MiB): a line or an event
that grows past it raises `EventTooLarge`, so a peer that never sends a line break cannot fill memory.
"""

from __future__ import annotations

from dataclasses import dataclass

_BOM = b"\xef\xbb\xbf"
MAX_EVENT_BYTES = 8 * 1024 * 1024  # a vLLM chunk is ~300 bytes; a first chunk with 100k prompt token ids ~700 KB
_MAX_RETRY_DIGITS = 10  # ~115 days in milliseconds


class EventTooLarge(ValueError):
    """A line or an event grew past the decoder's `max_event_bytes` without ending."""


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event. `id` is the last event ID seen so far (the spec keeps it across events)."""

    data: str
    event: str = "message"
    id: str = ""
    retry: int | None = None


class SSEDecoder:
    """Incremental decoder: `feed(bytes) -> [events]`, then `close()` at end of stream."""

    __slots__ = (
        "_at_start", "_data", "_event", "_last_id", "_pending", "_piece_bytes", "_pieces", "_retry", "_size",
        "_skip_lf", "max_event_bytes", "retry",
    )

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._pending = b""  # bytes of a line whose end has not arrived yet
        self._pieces: list[bytes] = []  # ... and chunks of it that held no line end, not joined yet
        self._piece_bytes = 0
        self._at_start = True  # the BOM may only appear in the stream's first bytes
        self._skip_lf = False  # the previous chunk ended in CR: a leading LF now belongs to that CRLF
        self._data: list[bytes] = []
        self._size = 0  # bytes in _data
        self._event = b""
        self._last_id = ""
        self._retry: int | None = None  # a retry field seen in the event being built
        self.retry: int | None = None  # the stream's reconnection time (ms), as last set by the server

    @property
    def has_partial_event(self) -> bool:
        """True when bytes of an event have arrived but not the blank line that dispatches it."""
        return bool(self._pending or self._pieces or self._data)

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        chunk = self._opened(chunk)
        if not chunk:
            return []
        if b"\r" in chunk:
            # A CR that ends this chunk ends its line now (no waiting); remember it so the LF of a CRLF
            # split across reads is not taken for a second, empty line.
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if b"\n" not in chunk:
            return self._hold(chunk)
        lines = chunk.split(b"\n")
        if self._pending or self._pieces:
            lines[0] = self._take_pending() + lines[0]
        self._pending = lines.pop()
        events: list[ServerSentEvent] = []
        for line in lines:
            if not line:
                event = self._dispatch()
                if event is not None:
                    events.append(event)
            elif line.startswith(b"data:"):
                # The hot path: vLLM sends one `data: {json}` line per event.
                self._add_data(line[6:] if line[5:6] == b" " else line[5:])
            else:
                self._field(line)
        if len(self._pending) > self.max_event_bytes:
            raise EventTooLarge(f"a line grew past {self.max_event_bytes:,} bytes without a line break")
        return events

    def _opened(self, chunk: bytes) -> bytes:
        """CHUNK without the stream's BOM, and without the LF of a CRLF whose CR ended the chunk before."""
        if self._at_start:
            chunk = self._strip_bom(chunk)
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        return chunk

    def _hold(self, piece: bytes) -> list[ServerSentEvent]:
        """A chunk in which no line ends: kept as a piece, joined only when its line ends. Rebuilding the pending
        line on every chunk (`pending + piece`) cost the square of a line sent in small pieces: 34 s for 2 MiB in
        64-byte chunks (audit 11)."""
        self._pieces.append(piece)
        self._piece_bytes += len(piece)
        if len(self._pending) + self._piece_bytes > self.max_event_bytes:
            raise EventTooLarge(f"a line grew past {self.max_event_bytes:,} bytes without a line break")
        return []

    def _take_pending(self) -> bytes:
        pending = self._pending + b"".join(self._pieces) if self._pieces else self._pending
        self._pending, self._piece_bytes = b"", 0
        self._pieces.clear()
        return pending

    def _strip_bom(self, chunk: bytes) -> bytes:
        chunk = self._pending + chunk
        self._pending = b""
        if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
            self._pending = chunk  # maybe a BOM split across reads: wait for more bytes
            return b""
        self._at_start = False
        return chunk.removeprefix(_BOM)

    def close(self) -> list[ServerSentEvent]:
        """End of stream: an event without its blank line is discarded, as the spec says."""
        self._pending = b""
        self._pieces.clear()
        self._piece_bytes = 0
        self._data = []
        self._size = 0
        self._event = b""
        self._retry = None
        return []

    def _add_data(self, value: bytes) -> None:
        self._data.append(value)
        self._size += len(value)
        if self._size > self.max_event_bytes:
            raise EventTooLarge(f"an event grew past {self.max_event_bytes:,} bytes without ending")

    def _field(self, line: bytes) -> None:
        if line.startswith(b":"):
            return  # a comment (vLLM and proxies send them as keep-alives)
        name, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._add_data(value)
        elif name == b"event":
            self._event = value
        elif name == b"id":
            if b"\0" not in value:
                self._last_id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit() and len(value) <= _MAX_RETRY_DIGITS:
            # bytes.isdigit: ASCII digits only, as the spec asks. A longer value is ignored, as a field the
            # spec cannot act on: int() of 60,000 digits is a ValueError (Python's 4,300-digit bound), and
            # below that a cost that grows with the square of the digits, for a reconnection time of aeons.
            self._retry = self.retry = int(value)
        # any other field name is ignored

    def _dispatch(self) -> ServerSentEvent | None:
        data, event, retry = self._data, self._event, self._retry
        self._data = []
        self._size = 0
        self._event = b""
        self._retry = None
        if not data:
            return None  # the spec: an empty data buffer dispatches nothing (but keeps the last ID)
        return ServerSentEvent(
            (data[0] if len(data) == 1 else b"\n".join(data)).decode("utf-8", "replace"),
            event.decode("utf-8", "replace") if event else "message",
            self._last_id,
            retry,
        )


def parse_sse(payload: bytes) -> list[ServerSentEvent]:
    """Every event in a complete byte stream (recorded captures, tests)."""
    decoder = SSEDecoder()
    return [*decoder.feed(payload), *decoder.close()]
