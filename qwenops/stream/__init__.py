"""The streaming client: WHATWG SSE parsing, typed deltas, typed errors, and latency metrics.

Light to import (httpx is imported when a stream is opened), so `qwenops --help` stays fast.
"""

from qwenops.errors import HTTPStatusError, InBandError, StreamError, StreamInterrupted, StreamTimeout
from qwenops.stream.chunks import ChatDelta, DeltaReader, Usage, decode_event
from qwenops.stream.client import (
    ChatDefaults,
    ChatRequest,
    Endpoint,
    TimedEvent,
    Timeouts,
    astream_chat,
    stream_chat,
)
from qwenops.stream.sse import ServerSentEvent, SSEDecoder, parse_sse

__all__ = [
    "ChatDefaults",
    "ChatDelta",
    "ChatRequest",
    "DeltaReader",
    "Endpoint",
    "HTTPStatusError",
    "InBandError",
    "SSEDecoder",
    "ServerSentEvent",
    "StreamError",
    "StreamInterrupted",
    "StreamTimeout",
    "TimedEvent",
    "Timeouts",
    "Usage",
    "astream_chat",
    "decode_event",
    "parse_sse",
    "stream_chat",
]
