"""What the stream client sends and where: the request body, the endpoint (root URL and key, checked by
`qwenops.net`'s rules), the timeouts. Values only: no I/O, shared as they are by the async client and
the sync one generated from it."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from qwenops.errors import BadInputError
from qwenops.net import check_api_key, normalize_base_url
from qwenops.untrusted import USERINFO, mask_url

if TYPE_CHECKING:
    import httpx

__all__ = ["ChatRequest", "Endpoint", "Message", "StreamedRequest", "Timeouts", "chat_request", "redact_url"]

Message = Mapping[str, Any]


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

    @property
    def head_s(self) -> float:
        """The most the response's head may take in all: connecting, sending the request, then the wait for
        the status line and headers (vLLM sends them before the first token)."""
        read = self.read_s if self.total_s is None else min(self.read_s, self.total_s)
        return self.connect_s + self.write_s + read

    def httpx(self) -> httpx.Timeout:
        import httpx

        # One socket read may never wait longer than the whole answer may take.
        read = self.read_s if self.total_s is None else min(self.read_s, self.total_s)
        return httpx.Timeout(connect=self.connect_s, read=read, write=self.write_s, pool=self.connect_s)


class StreamedRequest(Protocol):
    """What `aopen_stream` sends: the encoded body, the served model's name (for error messages) and the
    event count beyond which the stream is a runaway."""

    @property
    def encoded(self) -> bytes: ...
    @property
    def model(self) -> str: ...
    @property
    def max_events(self) -> int | None: ...


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


def chat_request(
    messages: Sequence[Message], *, model: str, temperature: float | None, top_p: float | None,
    max_tokens: int | None, include_usage: bool, extra_body: Mapping[str, Any] | None,
) -> ChatRequest:
    """`stream_chat`'s arguments as the request, or `BadInputError` where one is wrong."""
    if not model:
        raise BadInputError("must name the served model", field="model")
    return ChatRequest(
        messages=messages, model=model, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
        include_usage=include_usage, extra_body=dict(extra_body or {}),
    )


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
        # identity: the body is read as sent (aiter_raw), so a compressed one is refused, never inflated
        # (httpx inflates each network chunk whole: 13 KB of double gzip is 8 GiB; errors.encoded_stream).
        headers = {"Accept": "text/event-stream", "Content-Type": "application/json", "Accept-Encoding": "identity"}
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
