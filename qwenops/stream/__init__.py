"""The streaming client: WHATWG SSE parsing, one chunk decoder, typed deltas, typed errors, latency metrics.

Everything is explicit (server URL, model, API key, sampling): the library reads no settings or profiles.
Light to import (httpx is imported when a stream is opened), so `qwenops --help` stays fast.
"""

from qwenops.errors import (
    HTTPStatusError,
    InBandError,
    NotEventStream,
    NotHTTPError,
    RunawayStream,
    StreamError,
    StreamInterrupted,
    StreamTimeout,
)
from qwenops.stream.chunks import ChatDelta, DeltaReader, Resumed, Usage, decode_event
from qwenops.stream.client import (
    ChatRequest,
    Endpoint,
    TimedEvent,
    Timeouts,
    astream_chat,
    stream_chat,
)
from qwenops.stream.resume import Resume, not_resumable
from qwenops.stream.sse import ServerSentEvent, SSEDecoder, parse_sse

__all__ = [
    "ChatDelta",
    "ChatRequest",
    "DeltaReader",
    "Endpoint",
    "HTTPStatusError",
    "InBandError",
    "NotEventStream",
    "NotHTTPError",
    "Resume",
    "Resumed",
    "RunawayStream",
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
    "not_resumable",
    "parse_sse",
    "stream_chat",
]
