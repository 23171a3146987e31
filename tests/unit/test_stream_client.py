"""The client on recorded byte streams from the real vLLM CPU server, served through httpx's
MockTransport in arbitrary read sizes: deltas, timestamps, and each failure as its own typed error."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest

from qwenops.errors import (
    HTTPStatusError,
    InBandError,
    StreamError,
    StreamInterrupted,
    StreamTimeout,
    UnreachableError,
)
from qwenops.stream import ChatDelta, Timeouts, astream_chat, stream_chat
from tests.conftest import REPO

SSE = REPO / "tests" / "data" / "sse"
BASE = "http://qwen.test"


def capture(name: str) -> bytes:
    path = SSE / name
    return path.read_bytes()


class Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body delivered in the given pieces, then optionally a transport error (a cut connection)."""

    def __init__(self, pieces: list[bytes], fail: Exception | None = None) -> None:
        self.pieces = pieces
        self.fail = fail

    def __iter__(self) -> Iterator[bytes]:
        yield from self.pieces
        if self.fail is not None:
            raise self.fail

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        if self.fail is not None:
            raise self.fail


def pieces(raw: bytes, size: int) -> list[bytes]:
    return [raw[i : i + size] for i in range(0, len(raw), size)]


Handler = Callable[[httpx.Request], httpx.Response]


def sse_response(body: bytes, *, size: int = 7, fail: Exception | None = None, status: int = 200,
                 content_type: str = "text/event-stream; charset=utf-8") -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"content-type": content_type}, stream=Chunks(pieces(body, size), fail))

    return handle


def run_sync(handler: Handler, **kwargs: object) -> list[ChatDelta]:
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        return list(stream_chat([{"role": "user", "content": "Say hello."}], base_url=BASE, model="Qwen3-14B",
                                temperature=0.0, top_p=1.0, max_tokens=64, client=client, **kwargs))  # type: ignore[arg-type]


def run_async(handler: Handler, **kwargs: object) -> list[ChatDelta]:
    async def main() -> list[ChatDelta]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            stream = astream_chat([{"role": "user", "content": "Say hello."}], base_url=BASE, model="Qwen3-14B",
                                  temperature=0.0, top_p=1.0, max_tokens=64, client=client, **kwargs)  # type: ignore[arg-type]
            return [delta async for delta in stream]

    return asyncio.run(main())


RUNNERS = pytest.mark.parametrize("run", [run_sync, run_async], ids=["sync", "async"])

# A stream as vLLM 0.32 sends it (shape checked against the live server): role chunk, tokens, the stop
# chunk, the usage chunk, [DONE]. Used where the behaviour, not the recording, is under test.
HELLO = b"".join(
    b"data: " + json.dumps(chunk).encode() + b"\n\n"
    for chunk in [
        {"id": "c1", "object": "chat.completion.chunk", "model": "Qwen3-14B",
         "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
        *[{"id": "c1", "object": "chat.completion.chunk", "model": "Qwen3-14B",
           "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
          for piece in ["Hello", "!", " I", " am"]],
        {"id": "c1", "object": "chat.completion.chunk", "model": "Qwen3-14B",
         "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}]},
        {"id": "c1", "object": "chat.completion.chunk", "model": "Qwen3-14B", "choices": [],
         "usage": {"prompt_tokens": 13, "completion_tokens": 5, "total_tokens": 18}},
    ]
) + b"data: [DONE]\n\n"


@RUNNERS
@pytest.mark.parametrize("size", [1, 5, 64, 100_000])
def test_deltas_are_typed_and_independent_of_read_size(run: Callable[..., list[ChatDelta]], size: int) -> None:
    deltas = run(sse_response(HELLO, size=size))
    assert deltas[0].role == "assistant"
    assert "".join(d.content for d in deltas) == "Hello! I am"
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    assert deltas[-1].usage is not None and deltas[-1].usage.completion_tokens == 5
    assert sum(d.is_token for d in deltas) == 5
    times = [d.arrived_s for d in deltas]
    assert times == sorted(times)


@RUNNERS
def test_reasoning_is_read_under_both_names(run: Callable[..., list[ChatDelta]]) -> None:
    body = b"".join(
        b"data: " + json.dumps({"id": "r", "model": "m", "choices": [{"index": 0, "delta": d}]}).encode() + b"\n\n"
        for d in ({"reasoning": "think"}, {"reasoning_content": "ing"}, {"content": "ok"})
    ) + b"data: [DONE]\n\n"
    deltas = run(sse_response(body))
    assert [d.reasoning_content for d in deltas] == ["think", "ing", ""]


@RUNNERS
def test_in_band_error_raises_with_the_servers_message(run: Callable[..., list[ChatDelta]]) -> None:
    error = {"error": {"message": "EngineCore encountered an issue.", "type": "InternalServerError", "code": 500}}
    body = HELLO.split(b"data: [DONE]")[0].rsplit(b"data: ", 2)[0] + b"data: " + json.dumps(error).encode()
    body += b"\n\ndata: [DONE]\n\n"
    with pytest.raises(InBandError) as caught:
        run(sse_response(body))
    assert "EngineCore encountered an issue." in caught.value.message
    assert caught.value.error["type"] == "InternalServerError"
    assert caught.value.text_so_far == "Hello! I am"
    assert caught.value.code == "in_band_error"


@RUNNERS
@pytest.mark.parametrize("cut", [40, 300, 700])
def test_end_before_done_raises_stream_interrupted_with_tokens_so_far(
    run: Callable[..., list[ChatDelta]], cut: int
) -> None:
    body = HELLO[:cut]
    complete_events = body.count(b"\n\n")
    with pytest.raises(StreamInterrupted) as caught:
        run(sse_response(body))
    assert caught.value.chunks == max(0, min(complete_events - 1, 5))
    assert caught.value.code == "stream_interrupted"


@RUNNERS
def test_connection_cut_mid_body_raises_stream_interrupted(run: Callable[..., list[ChatDelta]]) -> None:
    body = HELLO[:400]
    with pytest.raises(StreamInterrupted) as caught:
        run(sse_response(body, fail=httpx.RemoteProtocolError("peer closed connection")))
    assert "peer closed connection" in caught.value.message
    assert caught.value.text_so_far.startswith("Hello")


@RUNNERS
def test_read_timeout_is_its_own_error(run: Callable[..., list[ChatDelta]]) -> None:
    with pytest.raises(StreamTimeout) as caught:
        run(sse_response(HELLO[:200], fail=httpx.ReadTimeout("timed out")), timeouts=Timeouts(read_s=2.5))
    assert "2.5 s" in caught.value.message
    assert caught.value.code == "client_timeout"


@RUNNERS
@pytest.mark.parametrize(
    ("status", "body", "code", "in_message", "in_hint"),
    [
        (401, b'{"error": "Unauthorized"}', "unauthorized", "HTTP 401: Unauthorized", "QWENOPS_API_KEY"),
        (404, b'{"error": {"message": "The model `nope` does not exist.", "type": "NotFoundError", "code": 404}}',
         "model_not_found", "The model `nope` does not exist.", "--model"),
        (500, b"<html>boom</html>", "http_error", "HTTP 500: <html>boom</html>", None),
    ],
)
def test_http_errors_carry_status_and_body(  # noqa: PLR0917 -- one argument per parametrized column
    run: Callable[..., list[ChatDelta]], status: int, body: bytes, code: str, in_message: str, in_hint: str | None
) -> None:
    with pytest.raises(HTTPStatusError) as caught:
        run(sse_response(body, status=status, content_type="application/json"))
    assert caught.value.status_code == status
    assert caught.value.body == body.decode()
    assert caught.value.code == code
    assert in_message in caught.value.message
    if in_hint:
        assert in_hint in (caught.value.hint or "")


@RUNNERS
def test_a_200_that_is_not_an_event_stream_is_an_error(run: Callable[..., list[ChatDelta]]) -> None:
    with pytest.raises(StreamError, match="not text/event-stream"):
        run(sse_response(b"<html></html>", content_type="text/html"))


@RUNNERS
def test_no_server_is_unreachable(run: Callable[..., list[ChatDelta]]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    with pytest.raises(UnreachableError) as caught:
        run(refuse)
    assert caught.value.field == "base_url"
    assert BASE in caught.value.message


def test_request_body_headers_key_and_separate_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWENOPS_API_KEY", "sk-secret-123")
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return sse_response(HELLO)(request)

    run_sync(handle, timeouts=Timeouts(connect_s=1.5, read_s=30.0))
    request = seen[0]
    assert request.url == f"{BASE}/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-secret-123"
    assert request.headers["accept"] == "text/event-stream"
    assert request.extensions["timeout"] == {"connect": 1.5, "read": 30.0, "write": 10.0, "pool": 1.5}
    body = json.loads(request.content)
    assert body == {
        "model": "Qwen3-14B", "messages": [{"role": "user", "content": "Say hello."}], "stream": True,
        "temperature": 0.0, "top_p": 1.0, "max_tokens": 64, "stream_options": {"include_usage": True},
    }


def test_defaults_come_from_the_profile_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWENOPS_BASE_URL", BASE)
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return sse_response(HELLO)(request)

    with httpx.Client(transport=httpx.MockTransport(handle)) as client:
        list(stream_chat([{"role": "user", "content": "hi"}], client=client))
    body = json.loads(seen[0].content)
    # cpu-tiny (the default profile): served as Qwen3-14B, greedy, 64 tokens
    assert (body["model"], body["temperature"], body["top_p"], body["max_tokens"]) == ("Qwen3-14B", 0.0, 1.0, 64)
    assert "authorization" not in seen[0].headers


def test_api_key_never_appears_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWENOPS_API_KEY", "sk-secret-123")
    with pytest.raises(HTTPStatusError) as caught:
        run_sync(sse_response(b'{"error": "Unauthorized"}', status=401, content_type="application/json"))
    assert "sk-secret-123" not in caught.value.one_line()


# ------------------------------------------------------------------- recorded captures from the real server
# tests/data/sse/README.md says how each was recorded (vLLM CPU 0.32, the tiny Qwen3, greedy).

SEA = "The sea is wide and deep. Waves roll in, waves roll out, and the tide keeps time for every shore."


@RUNNERS
@pytest.mark.parametrize("size", [1, 7, 4096])
def test_recorded_normal_stream(run: Callable[..., list[ChatDelta]], size: int) -> None:
    deltas = run(sse_response(capture("normal.sse"), size=size), include_usage=False)
    assert deltas[0].role == "assistant"
    assert "".join(d.content for d in deltas) == SEA
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    assert sum(d.is_token for d in deltas) == 32  # 31 content chunks + the stop chunk, one token each here
    assert all(d.usage is None for d in deltas)


@RUNNERS
def test_recorded_stream_with_usage_and_merged_chunks(run: Callable[..., list[ChatDelta]]) -> None:
    deltas = run(sse_response(capture("with_usage.sse"), size=64))
    assert "".join(d.content for d in deltas) == SEA
    usage = deltas[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (14, 32)
    # vLLM merged four pairs of tokens into single chunks: chunks undercount, usage is the truth.
    assert sum(d.is_token for d in deltas) == 28


@RUNNERS
def test_recorded_in_band_error(run: Callable[..., list[ChatDelta]]) -> None:
    with pytest.raises(InBandError) as caught:
        run(sse_response(capture("inband_error.sse"), size=4096))
    assert caught.value.message == (
        "the server reported an error inside the stream: "
        "EngineCore encountered an issue. See stack trace (above) for the root cause."
    )
    assert caught.value.error["code"] == 500
    assert caught.value.chunks > 1000  # everything generated before the kill still arrived
    assert caught.value.text_so_far.startswith("The sea is wide")


@RUNNERS
@pytest.mark.parametrize("trim", [0, 25])  # on an event boundary as recorded, and inside an event
def test_recorded_cut_mid_stream(run: Callable[..., list[ChatDelta]], trim: int) -> None:
    raw = capture("cut_midstream.sse")
    raw = raw[: len(raw) - trim]
    with pytest.raises(StreamInterrupted) as caught:
        run(sse_response(raw, size=100, fail=httpx.RemoteProtocolError("peer closed connection without "
                                                                        "sending complete message body")))
    complete = raw.count(b"\n\n")
    assert caught.value.chunks == complete - 1  # every complete event but the role announcement
    assert caught.value.text_so_far.startswith("The sea")
    assert "peer closed connection" in caught.value.message
