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

This module is the public API; the code lives by role: `request` (body, endpoint, timeouts), `errors`
(the error text and httpx's error mapping), `transport` (what sync and async share of an exchange, and
the two places they differ), `async_client` (the I/O, written once) and `sync_client` (generated from
it by scripts/unasync_stream.py; never edited by hand).
"""

from __future__ import annotations

from qwenops.errors import NotEventStream, NotHTTPError, RunawayStream
from qwenops.net import check_api_key, normalize_base_url
from qwenops.stream.async_client import AsyncOpenStream, aopen_chat_stream, aopen_stream, astream_chat
from qwenops.stream.chunks import DONE, ChatDelta, DeltaReader, Usage
from qwenops.stream.errors import TransportCut, describe_body, http_status_error, not_event_stream
from qwenops.stream.request import ChatRequest, Endpoint, Message, StreamedRequest, Timeouts, redact_url
from qwenops.stream.sync_client import OpenStream, open_chat_stream, stream_chat
from qwenops.stream.transport import TimedEvent

__all__ = [
    "DONE",
    "AsyncOpenStream",
    "ChatDelta",
    "ChatRequest",
    "DeltaReader",
    "Endpoint",
    "Message",
    "NotEventStream",
    "NotHTTPError",
    "OpenStream",
    "RunawayStream",
    "StreamedRequest",
    "TimedEvent",
    "Timeouts",
    "TransportCut",
    "Usage",
    "aopen_chat_stream",
    "aopen_stream",
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
