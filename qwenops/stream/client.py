"""Stream chat completions from an OpenAI-compatible server (vLLM), sync and async, on httpx.

    for delta in stream_chat([{"role": "user", "content": "Say hello."}]):
        print(delta.content, end="", flush=True)

What the article's hand-rolled clients get wrong and this gets right:
- events are parsed by the WHATWG rules (`qwenops.stream.sse`), not by `line.startswith("data: ")`;
- connect and read timeouts are separate: a 14B model may think for a while, a dead host must fail fast;
- every failure is its own typed error, never swallowed: an HTTP error status (`HTTPStatusError`, with
  status and body), an error sent inside a 200 stream (`InBandError`, as vLLM does when its engine dies),
  a connection cut before `data: [DONE]` (`StreamInterrupted`, with the text received so far), silence
  longer than the read timeout (`StreamTimeout`), no server at all (`UnreachableError`);
- each delta carries the monotonic time its bytes arrived, so latency metrics need no second clock;
- the async variant never blocks the event loop.

Layers, so the smoke test can check the raw stream and the library can hide it: `ChatRequest` builds the
body; `open_chat_stream` / `aopen_chat_stream` send it and yield `TimedEvent`s; `DeltaReader`
(`qwenops.stream.chunks`, sans-IO, the one chunk decoder) turns events into `ChatDelta`s and raises the
in-band and interruption errors; `stream_chat` / `astream_chat` put the three together.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qwenops.errors import (
    BadInputError,
    HTTPStatusError,
    StreamError,
    StreamInterrupted,
    StreamTimeout,
    UnreachableError,
)
from qwenops.stream.chunks import DONE, ChatDelta, DeltaReader, Usage
from qwenops.stream.sse import ServerSentEvent, SSEDecoder

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DONE",
    "ChatDefaults",
    "ChatDelta",
    "ChatRequest",
    "DeltaReader",
    "Endpoint",
    "TimedEvent",
    "Timeouts",
    "TransportCut",
    "Usage",
    "aopen_chat_stream",
    "astream_chat",
    "http_status_error",
    "open_chat_stream",
    "stream_chat",
]

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
# Bodies of HTTP errors are kept for the message; an error page is never worth more than this.
_MAX_ERROR_BODY = 4096

Message = Mapping[str, Any]


# --------------------------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. `read_s` is the longest silence between two reads, not a limit on the whole answer."""

    connect_s: float = 5.0
    read_s: float = 60.0
    write_s: float = 10.0

    def httpx(self) -> httpx.Timeout:
        import httpx

        return httpx.Timeout(
            connect=self.connect_s, read=self.read_s, write=self.write_s, pool=self.connect_s
        )


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


def http_status_error(status_code: int, body: bytes, *, model: str) -> HTTPStatusError:
    text = body[:_MAX_ERROR_BODY].decode("utf-8", "replace")
    message = text.strip() or "(empty body)"
    try:
        parsed = json.loads(text)
        # OpenAI/vLLM: {"error": {"message": ...}}; FastAPI: {"detail": ...}
        err = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
        message = str(err.get("message") or err.get("detail") or err) if isinstance(err, dict) else str(err)
    except ValueError:
        pass
    hint = code = None
    if status_code == 401:
        code = "unauthorized"
        hint = "the server wants an API key: set QWENOPS_API_KEY to the value of its --api-key"
    elif status_code == 404 and "model" in message.lower():
        code = "model_not_found"
        hint = f"the server does not serve a model named {model!r}; pass the served name with --model"
    return HTTPStatusError(
        f"HTTP {status_code}: {' '.join(message.split())[:300]}",
        status_code=status_code,
        body=text,
        hint=hint,
        code=code,
    )


# --------------------------------------------------------------------------------------------- transport


@dataclass(frozen=True)
class Endpoint:
    """Where and how to send: base URL (without /v1) and the API key, if the server wants one."""

    base_url: str = DEFAULT_BASE_URL
    api_key: str | None = None

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/v1/chat/completions"

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers


@dataclass
class OpenStream:
    """A response whose headers have arrived; `events()` / `aevents()` yield what follows."""

    status_code: int
    content_type: str
    sent_s: float
    headers_s: float
    _response: Any
    _timeouts: Timeouts
    decoder: SSEDecoder = field(default_factory=SSEDecoder)

    def read_body(self) -> bytes:
        """The whole body of an error answer (not for streams: it would wait for the end)."""
        body: bytes = self._response.read()
        return body[:_MAX_ERROR_BODY]

    async def aread_body(self) -> bytes:
        body: bytes = await self._response.aread()
        return body[:_MAX_ERROR_BODY]

    @property
    def is_event_stream(self) -> bool:
        return self.content_type.split(";", 1)[0].strip().lower() == "text/event-stream"

    def events(self) -> Iterator[TimedEvent]:
        """Events as they complete; a cut connection or a read timeout ends the iteration with an error."""
        import httpx

        clock = time.perf_counter
        decoder = self.decoder
        try:
            for chunk in self._response.iter_bytes():
                now = clock()
                for event in decoder.feed(chunk):
                    yield TimedEvent(now, event)
        except httpx.ReadTimeout:
            raise StreamTimeout(
                f"no bytes for {self._timeouts.read_s:g} s (read timeout)",
                hint="raise --timeout if the model is slow to start answering",
            ) from None
        except httpx.TransportError as exc:  # after the headers, any transport failure cuts the answer
            raise TransportCut(str(exc) or type(exc).__name__) from None
        decoder.close()

    async def aevents(self) -> AsyncIterator[TimedEvent]:
        import httpx

        clock = time.perf_counter
        decoder = self.decoder
        try:
            async for chunk in self._response.aiter_bytes():
                now = clock()
                for event in decoder.feed(chunk):
                    yield TimedEvent(now, event)
        except httpx.ReadTimeout:
            raise StreamTimeout(
                f"no bytes for {self._timeouts.read_s:g} s (read timeout)",
                hint="raise --timeout if the model is slow to start answering",
            ) from None
        except httpx.TransportError as exc:  # after the headers, any transport failure cuts the answer
            raise TransportCut(str(exc) or type(exc).__name__) from None
        decoder.close()


class TransportCut(Exception):
    """The transport lost the connection mid-body; `DeltaReader` turns it into `StreamInterrupted`."""


def _unreachable(endpoint: Endpoint, cause: object) -> UnreachableError:
    return UnreachableError(
        f"cannot connect to {endpoint.base_url}: {str(cause) or type(cause).__name__}",
        field="base_url",
        hint="is the server running and listening there? start it with qwenops serve",
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
        raise StreamTimeout(f"no response headers within {timeouts.read_s:g} s (read timeout)") from None
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        raise StreamInterrupted(
            f"the server closed the connection before answering: {exc}", text_so_far="", chunks=0
        ) from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise BadInputError(
            f"{endpoint.base_url!r} is not a usable URL: {exc}", field="base_url", hint="e.g. http://127.0.0.1:8000"
        ) from None
    except httpx.LocalProtocolError:
        # h11's message quotes the offending header, which would print the API key: leave it out.
        raise BadInputError(
            "the request is not valid HTTP: a header value is not one line of printable text",
            field="api_key",
            hint="check QWENOPS_API_KEY",
        ) from None
    except httpx.TransportError as exc:
        # The rest (write errors and timeouts, pool timeouts, proxy and remote protocol errors) all mean that no
        # answer can come from there; the type names which one.
        raise _unreachable(endpoint, f"{type(exc).__name__}: {exc}") from None


def _opened(response: httpx.Response, sent_s: float, timeouts: Timeouts) -> OpenStream:
    return OpenStream(
        status_code=response.status_code,
        content_type=response.headers.get("content-type", ""),
        sent_s=sent_s,
        headers_s=time.perf_counter(),
        _response=response,
        _timeouts=timeouts,
    )


@contextmanager
def open_chat_stream(
    client: httpx.Client, endpoint: Endpoint, request: ChatRequest, timeouts: Timeouts
) -> Iterator[OpenStream]:
    """Send the request; yield the open stream (any status: the caller decides what an error is)."""
    sent_s = time.perf_counter()
    with _transport_errors(endpoint, timeouts), client.stream(
        "POST", endpoint.url, json=request.body(), headers=endpoint.headers(), timeout=timeouts.httpx()
    ) as response:
        yield _opened(response, sent_s, timeouts)


@asynccontextmanager
async def aopen_chat_stream(
    client: httpx.AsyncClient, endpoint: Endpoint, request: ChatRequest, timeouts: Timeouts
) -> AsyncIterator[OpenStream]:
    sent_s = time.perf_counter()
    with _transport_errors(endpoint, timeouts):
        async with client.stream(
            "POST", endpoint.url, json=request.body(), headers=endpoint.headers(), timeout=timeouts.httpx()
        ) as response:
            yield _opened(response, sent_s, timeouts)


def _require_ok(stream: OpenStream, body: bytes, request: ChatRequest) -> None:
    if stream.status_code != 200:
        raise http_status_error(stream.status_code, body, model=request.model)
    if not stream.is_event_stream:
        raise StreamError(
            f"the server answered with Content-Type {stream.content_type!r}, not text/event-stream",
            hint="is base_url an OpenAI-compatible server?",
        )


# --------------------------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class ChatDefaults:
    """Where the client's defaults come from when the caller leaves them out: settings and profile."""

    endpoint: Endpoint
    model: str
    temperature: float
    top_p: float
    max_tokens: int

    @classmethod
    def load(cls, profile: str | None = None) -> ChatDefaults:
        """QWENOPS_BASE_URL / QWENOPS_API_KEY from settings; model name and sampling from the profile."""
        from qwenops.net import base_url as server_url
        from qwenops.profiles import load_profile
        from qwenops.settings import load_settings

        settings = load_settings()
        chosen = load_profile(profile)
        base_url = settings.base_url or server_url(chosen.host, chosen.port)
        key = settings.api_key.get_secret_value() if settings.api_key else None
        return cls(
            endpoint=Endpoint(base_url=base_url, api_key=key),
            model=chosen.api_model_name,
            temperature=chosen.client.temperature,
            top_p=chosen.client.top_p,
            max_tokens=chosen.client.max_tokens,
        )


def _resolve(
    messages: Sequence[Message],
    *,
    base_url: str | None,
    api_key: str | None,
    model: str | None,
    temperature: float | None,
    top_p: float | None,
    max_tokens: int | None,
    include_usage: bool,
    extra_body: Mapping[str, Any] | None,
    profile: str | None,
) -> tuple[Endpoint, ChatRequest]:
    defaults = None
    if base_url is None or model is None or temperature is None or top_p is None or max_tokens is None:
        defaults = ChatDefaults.load(profile)
    elif api_key is None:
        from qwenops.settings import load_settings

        key = load_settings().api_key
        api_key = key.get_secret_value() if key else None
    if defaults is not None:
        base_url = base_url or defaults.endpoint.base_url
        api_key = api_key if api_key is not None else defaults.endpoint.api_key
        model = model or defaults.model
        temperature = defaults.temperature if temperature is None else temperature
        top_p = defaults.top_p if top_p is None else top_p
        max_tokens = defaults.max_tokens if max_tokens is None else max_tokens
    assert base_url is not None and model is not None  # filled from defaults above
    request = ChatRequest(
        messages=messages,
        model=model,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        include_usage=include_usage,
        extra_body=dict(extra_body or {}),
    )
    return Endpoint(base_url=base_url, api_key=api_key), request


def stream_chat(
    messages: Sequence[Message],
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    model: str | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    max_tokens: int | None = None,
    include_usage: bool = True,
    extra_body: Mapping[str, Any] | None = None,
    timeouts: Timeouts = Timeouts(),  # frozen, so one shared default is safe
    client: httpx.Client | None = None,
    profile: str | None = None,
) -> Iterator[ChatDelta]:
    """Yield the deltas of one streamed chat completion; raise a typed `StreamError` if it fails.

    Values left as None come from the environment (QWENOPS_BASE_URL, QWENOPS_API_KEY) and the profile
    (served model name, `client:` sampling defaults). Pass `client` to reuse connections across calls.
    """
    import httpx

    endpoint, request = _resolve(
        messages, base_url=base_url, api_key=api_key, model=model, temperature=temperature, top_p=top_p,
        max_tokens=max_tokens, include_usage=include_usage, extra_body=extra_body, profile=profile,
    )
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
                raise reader.interrupted(f"the connection broke ({cut})") from None
            reader.finish()
    finally:
        if owned:
            http.close()


async def astream_chat(
    messages: Sequence[Message],
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    model: str | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    max_tokens: int | None = None,
    include_usage: bool = True,
    extra_body: Mapping[str, Any] | None = None,
    timeouts: Timeouts = Timeouts(),  # frozen, so one shared default is safe
    client: httpx.AsyncClient | None = None,
    profile: str | None = None,
) -> AsyncIterator[ChatDelta]:
    """`stream_chat` for asyncio: the same deltas and errors, without blocking the event loop."""
    import httpx

    endpoint, request = _resolve(
        messages, base_url=base_url, api_key=api_key, model=model, temperature=temperature, top_p=top_p,
        max_tokens=max_tokens, include_usage=include_usage, extra_body=extra_body, profile=profile,
    )
    owned = client is None
    http = client if client is not None else httpx.AsyncClient()
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
                raise reader.interrupted(f"the connection broke ({cut})") from None
            reader.finish()
    finally:
        if owned:
            await http.aclose()
