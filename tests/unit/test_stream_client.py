"""The client against a scripted server on a real local socket (tests/sse_server.py), fed recorded byte
streams from the real vLLM CPU server and hand-broken ones: deltas, timestamps, each failure as its own
typed error, deadlines, bounds, and where the API key goes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx
import pytest

from qwenops.errors import (
    BadInputError,
    HTTPStatusError,
    InBandError,
    StreamError,
    StreamInterrupted,
    StreamTimeout,
    UnreachableError,
)
from qwenops.stream import ChatDelta, NotEventStream, NotHTTPError, RunawayStream, Timeouts, astream_chat, stream_chat
from tests.conftest import REPO
from tests.sse_server import Answer, Conn, Seen, forever, raw_bytes, serving, status_of, stream_of

SSE = REPO / "tests" / "data" / "sse"

HANG_S = 60  # far past every timeout these tests set; reached only if a stream never ends


def capture(name: str) -> bytes:
    path = SSE / name
    return path.read_bytes()


def run_sync(answer: Answer, **kwargs: object) -> list[ChatDelta]:
    asked: dict[str, object] = {"model": "Qwen3-14B", "temperature": 0.0, "top_p": 1.0, "max_tokens": 64, **kwargs}
    with serving(answer) as server:
        return list(stream_chat([{"role": "user", "content": "Say hello."}], base_url=server.base_url,
                                **asked))  # type: ignore[arg-type]


def run_async(answer: Answer, **kwargs: object) -> list[ChatDelta]:
    asked: dict[str, object] = {"model": "Qwen3-14B", "temperature": 0.0, "top_p": 1.0, "max_tokens": 64, **kwargs}

    async def main(base_url: str) -> list[ChatDelta]:
        stream = astream_chat([{"role": "user", "content": "Say hello."}], base_url=base_url,
                              **asked)  # type: ignore[arg-type]
        return [delta async for delta in stream]

    with serving(answer) as server:
        return asyncio.run(main(server.base_url))


RUNNERS = pytest.mark.parametrize("run", [run_sync, run_async], ids=["sync", "async"])
Run = Callable[..., list[ChatDelta]]


def sse(*chunks: object) -> bytes:
    return b"".join(b"data: " + (c if isinstance(c, bytes) else json.dumps(c).encode()) + b"\n\n" for c in chunks)


def wire(delta: Mapping[str, object] | None = None, finish: str | None = None, **top: object) -> dict[str, object]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "c1", "object": "chat.completion.chunk", "model": "Qwen3-14B", "choices": choices, **top}


# A stream as vLLM 0.32 sends it (shape checked against the live server): role chunk, tokens, the stop
# chunk, the usage chunk, [DONE]. Used where the behaviour, not the recording, is under test.
HELLO = sse(
    wire({"role": "assistant", "content": ""}),
    *[wire({"content": piece}) for piece in ["Hello", "!", " I", " am"]],
    wire({"content": ""}, finish="stop"),
    wire(usage={"prompt_tokens": 13, "completion_tokens": 5, "total_tokens": 18}),
) + b"data: [DONE]\n\n"


@RUNNERS
@pytest.mark.parametrize("size", [1, 5, 64, 100_000])
def test_deltas_are_typed_and_independent_of_write_size(run: Run, size: int) -> None:
    deltas = run(stream_of(HELLO, size=size))
    assert deltas[0].role == "assistant"
    assert "".join(d.content for d in deltas) == "Hello! I am"
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    assert deltas[-1].usage is not None and deltas[-1].usage.completion_tokens == 5
    assert sum(d.is_token for d in deltas) == 5
    times = [d.arrived_s for d in deltas]
    assert times == sorted(times)


@RUNNERS
def test_reasoning_is_read_under_both_names(run: Run) -> None:
    body = sse(*(wire(d) for d in ({"reasoning": "think"}, {"reasoning_content": "ing"}, {"content": "ok"})))
    deltas = run(stream_of(body + b"data: [DONE]\n\n"))
    assert [d.reasoning_content for d in deltas] == ["think", "ing", ""]


@RUNNERS
def test_in_band_error_raises_with_the_servers_message(run: Run) -> None:
    error = {"error": {"message": "EngineCore encountered an issue.", "type": "InternalServerError", "code": 500}}
    body = HELLO.split(b"data: [DONE]")[0].rsplit(b"data: ", 2)[0] + sse(error) + b"data: [DONE]\n\n"
    with pytest.raises(InBandError) as caught:
        run(stream_of(body))
    assert "EngineCore encountered an issue." in caught.value.message
    assert caught.value.error["type"] == "InternalServerError"
    assert caught.value.text_so_far == "Hello! I am"
    assert caught.value.code == "in_band_error"


@RUNNERS
@pytest.mark.parametrize("cut", [40, 300, 700])
def test_end_before_done_raises_stream_interrupted_with_tokens_so_far(run: Run, cut: int) -> None:
    body = HELLO[:cut]
    complete_events = body.count(b"\n\n")
    with pytest.raises(StreamInterrupted) as caught:
        run(stream_of(body))
    assert caught.value.chunks == max(0, min(complete_events - 1, 5))
    assert caught.value.code == "stream_interrupted"
    assert "troubleshoot" not in caught.value.one_line()


@RUNNERS
def test_connection_cut_mid_body_raises_stream_interrupted(run: Run) -> None:
    with pytest.raises(StreamInterrupted) as caught:
        run(stream_of(HELLO[:400], cut=True))
    assert "the connection broke" in caught.value.message
    assert caught.value.text_so_far.startswith("Hello")


def stall_after(body: bytes, *, comments_every_s: float | None = None) -> Answer:
    """The body, then silence (or only keep-alive comments) until the client gives up."""

    def answer(conn: Conn, _seen: Seen) -> None:
        conn.head(200, "text/event-stream", chunked=True)
        conn.chunk(body)
        while not conn.stop.is_set():
            if comments_every_s is None:
                conn.sleep(0.05)
            elif not conn.chunk(b": keepalive\n\n") or not conn.sleep(comments_every_s):
                return

    return answer


FIRST_TWO = b"\n\n".join(HELLO.split(b"\n\n")[:2]) + b"\n\n"  # the role chunk and "Hello"


@RUNNERS
@pytest.mark.parametrize("body", [FIRST_TWO, FIRST_TWO + b'data: {"choi'], ids=["after an event", "mid-event"])
def test_silence_is_a_read_timeout(run: Run, body: bytes) -> None:
    """After a whole event the socket's read timeout ends the wait; mid-event the reader's own deadline does
    (AsyncOpenStream.aevents): both are the same StreamTimeout."""
    with pytest.raises(StreamTimeout) as caught:
        run(stall_after(body), timeouts=Timeouts(read_s=0.5))
    assert "0.5 s" in caught.value.message
    assert caught.value.code == "client_timeout"


def drip_head(conn: Conn, _seen: Seen) -> None:
    """A header byte every 0.1 s, without end: each read is quick, the head never whole."""
    conn.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n")
    while conn.send(b"x") and conn.sleep(0.1):
        pass


def test_a_head_that_drips_ends_at_the_heads_deadline() -> None:
    """httpx bounds each read (0.5 s here, never reached); the async client bounds the whole head:
    connect 0.3 + write 0.3 + read 0.5 s."""
    started = time.monotonic()
    with pytest.raises(StreamTimeout, match=r"no whole response head within 1\.1 s") as caught:
        run_async(drip_head, timeouts=Timeouts(connect_s=0.3, write_s=0.3, read_s=0.5))
    assert caught.value.code == "client_timeout"
    assert time.monotonic() - started < HANG_S  # it ended: a hang guard, not a speed goal


@RUNNERS
def test_keep_alive_comments_are_not_progress(run: Run) -> None:
    """Issue #14.6: a server that sends `: keepalive` every 0.2 s but no token fails after the read timeout."""
    started = time.monotonic()
    with pytest.raises(StreamTimeout, match="keep-alive comments do not count"):
        run(stall_after(FIRST_TWO, comments_every_s=0.1), timeouts=Timeouts(read_s=0.6))
    assert time.monotonic() - started < HANG_S  # it ended: a hang guard, not a speed goal


@RUNNERS
def test_a_stream_that_outlasts_the_deadline_fails(run: Run) -> None:
    """Tokens keep coming, so no read timeout fires; the whole answer still has a deadline."""
    token = sse(wire({"content": "a"}))
    started = time.monotonic()
    with pytest.raises(StreamTimeout, match=r"did not finish within 0\.8 s \(deadline\)"):
        run(forever([token], every_s=0.05), timeouts=Timeouts(read_s=5, total_s=0.8), max_tokens=10_000)
    assert time.monotonic() - started < HANG_S  # it ended: a hang guard, not a speed goal


@RUNNERS
def test_a_stream_without_end_stops_far_past_max_tokens(run: Run) -> None:
    """Issue #14.7: chunks forever without [DONE]: stopped after 2 x max_tokens + 8 events, memory bounded."""
    with pytest.raises(RunawayStream) as caught:
        run(forever([sse(wire({"content": "a"}))]), max_tokens=5)
    assert caught.value.code == "runaway_stream"
    assert "far more than max_tokens allows (at most 18)" in caught.value.message


@RUNNERS
def test_a_line_without_end_is_stopped(run: Run) -> None:
    with pytest.raises(RunawayStream, match="a line grew past"):
        run(forever([b"data: " + b"x" * 65536]))


@RUNNERS
@pytest.mark.parametrize(
    ("status", "body", "content_type", "code", "in_message", "in_hint"),
    [
        (401, b'{"error": "Unauthorized"}', "application/json", "unauthorized", "HTTP 401: Unauthorized",
         "api_key"),
        (404, b'{"error": {"message": "The model `nope` does not exist.", "type": "NotFoundError", "code": 404}}',
         "application/json", "model_not_found", "The model `nope` does not exist.", "/v1/models"),
        (500, b"<html>boom</html>", "text/html", "http_error",
         "HTTP 500: expected a JSON error, got an HTML page (17 bytes)", None),
    ],
)
def test_http_errors_carry_status_and_body(  # noqa: PLR0917 -- one argument per parametrized column
    run: Run, status: int, body: bytes, content_type: str, code: str, in_message: str, in_hint: str | None
) -> None:
    with pytest.raises(HTTPStatusError) as caught:
        run(status_of(status, body, content_type))
    assert caught.value.status_code == status
    assert caught.value.body == body.decode()
    assert caught.value.code == code
    assert in_message in caught.value.message
    if in_hint:
        assert in_hint in (caught.value.hint or "")


def test_an_html_error_page_is_described_not_pasted() -> None:
    page = (b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title><style>" + b"x" * 400
            + b"</style></head><body><h1>502 Bad Gateway</h1>" + b"<p>nginx</p>" * 30 + b"</body></html>")
    with pytest.raises(HTTPStatusError) as caught:
        run_sync(status_of(500, page, "text/html; charset=utf-8"))
    line = caught.value.one_line()
    assert line == f"HTTP 500: expected a JSON error, got an HTML page titled '502 Bad Gateway' ({len(page):,} bytes)"
    assert "<" not in line


@RUNNERS
@pytest.mark.parametrize(
    ("body", "content_type", "described"),
    [
        (b"<html><title>Login</title></html>", "text/html", "an HTML page titled 'Login'"),
        (b'{"object": "chat.completion", "choices": []}', "application/json",
         "a whole chat.completion as one JSON document (44 bytes): the server ignored stream: true"),
    ],
)
def test_a_200_that_is_not_an_event_stream_says_what_came(
    run: Run, body: bytes, content_type: str, described: str
) -> None:
    with pytest.raises(NotEventStream) as caught:
        run(status_of(200, body, content_type))
    assert caught.value.one_line().startswith(f"the server answered HTTP 200 with {content_type!r}, "
                                              "not text/event-stream: ")
    assert described in caught.value.message


@RUNNERS
def test_a_server_that_does_not_speak_http(run: Run) -> None:
    with pytest.raises(NotHTTPError) as caught:
        run(raw_bytes(b"\x00\x00\x12\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x80\r\n\r\n"))
    line = caught.value.one_line()
    assert caught.value.code == "not_http" and caught.value.exit_code == 3
    assert "does not answer in HTTP: expected a status line such as 'HTTP/1.1 200 OK', got " in line
    assert "bytearray" not in line and len(line) < 300


@RUNNERS
def test_no_server_is_unreachable(run: Run) -> None:
    from tests.integration.conftest import free_port

    async def main(base_url: str) -> list[ChatDelta]:
        return [d async for d in astream_chat([{"role": "user", "content": "x"}], base_url=base_url, model="m")]

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(UnreachableError) as caught:
        if run is run_sync:
            list(stream_chat([{"role": "user", "content": "x"}], base_url=url, model="m"))
        else:
            asyncio.run(main(url))
    assert caught.value.field == "base_url"
    assert url in caught.value.message


def recording(answer: Answer) -> tuple[Answer, list[Seen]]:
    seen: list[Seen] = []

    def record(conn: Conn, request: Seen) -> None:
        seen.append(request)
        answer(conn, request)

    return record, seen


def test_request_body_headers_key_and_separate_timeouts() -> None:
    answer, seen = recording(stream_of(HELLO))
    run_sync(answer, api_key="sk-secret-123", timeouts=Timeouts(connect_s=1.5, read_s=30.0))
    request = seen[0]
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == "Bearer sk-secret-123"
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.body) == {
        "model": "Qwen3-14B", "messages": [{"role": "user", "content": "Say hello."}], "stream": True,
        "temperature": 0.0, "top_p": 1.0, "max_tokens": 64, "stream_options": {"include_usage": True},
    }
    assert Timeouts(connect_s=1.5, read_s=30.0).httpx().as_dict() == {
        "connect": 1.5, "read": 30.0, "write": 10.0, "pool": 1.5}
    assert Timeouts(read_s=30.0, total_s=2.0).httpx().read == 2.0  # one read never outlasts the deadline


def test_the_library_reads_no_settings_so_the_key_goes_nowhere_unasked(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue #8 A: QWENOPS_API_KEY in ./.env (and in the environment) must not reach a host the caller
    named: the library sends a key only when given one, and only to the base_url given with it."""
    env_file = tmp_path / ".env"
    env_file.write_text("QWENOPS_API_KEY=sk-operator-secret\nQWENOPS_BASE_URL=http://127.0.0.1:9\n", encoding="utf-8")
    monkeypatch.setenv("QWENOPS_ENV_FILE", str(env_file))
    monkeypatch.setenv("QWENOPS_API_KEY", "sk-operator-secret")
    answer, seen = recording(stream_of(HELLO))
    with serving(answer) as elsewhere:
        list(stream_chat([{"role": "user", "content": "hi"}], base_url=elsewhere.base_url, model="Qwen3-14B"))
    assert "authorization" not in seen[0].headers
    assert "sk-operator-secret" not in json.dumps([s.headers for s in seen])


def test_nothing_is_defaulted_from_a_profile() -> None:
    """Left out, sampling is the server's default: the body names only what the caller gave."""
    answer, seen = recording(stream_of(HELLO))
    with serving(answer) as server:
        list(stream_chat([{"role": "user", "content": "hi"}], base_url=server.base_url + "/v1/", model="Served"))
    assert seen[0].path == "/v1/chat/completions"  # a trailing /v1/ is the same server root
    assert json.loads(seen[0].body) == {"model": "Served", "messages": [{"role": "user", "content": "hi"}],
                                        "stream": True, "stream_options": {"include_usage": True}}
    with pytest.raises(TypeError):
        stream_chat([{"role": "user", "content": "hi"}])  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("key", "what"),
    [("clé", "character 3 of 3 is not ASCII"),
     ("sk-\udcff", "character 4 of 4 is a byte that is not UTF-8 text (0xff)"),
     ("sk-secret\nvalue", "character 10 of 15 is a line break"), ("sk secret", "character 3 of 9 is a space")],
)
def test_a_key_that_no_header_can_carry_is_bad_input_and_not_printed(key: str, what: str) -> None:
    with pytest.raises(BadInputError) as caught:
        run_sync(stream_of(HELLO), api_key=key)
    assert caught.value.field == "api_key" and what in caught.value.message
    assert key not in caught.value.one_line() and "secret" not in caught.value.one_line()


@pytest.mark.parametrize(
    ("url", "wrong"),
    [("http://127.0.0.1:8000\n", "has a line break at character 22"), ("http://[::1", "is not a URL"),
     ("ftp://127.0.0.1/", "is not an http(s) URL"), ("http://127.0.0.1:99999", "is not a URL"),
     ("http://127.0.0.1:8000/?key=1", "has a ?query or #fragment")],
)
def test_an_unusable_base_url_is_bad_input(url: str, wrong: str) -> None:
    with pytest.raises(BadInputError) as caught:
        list(stream_chat([{"role": "user", "content": "x"}], base_url=url, model="m"))
    assert caught.value.field == "base_url" and wrong in caught.value.message


def test_credentials_in_the_url_are_never_printed() -> None:
    from tests.integration.conftest import free_port

    url = f"http://user:hunter2@127.0.0.1:{free_port()}"
    with pytest.raises(UnreachableError) as caught:
        list(stream_chat([{"role": "user", "content": "x"}], base_url=url, model="m"))
    assert "hunter2" not in caught.value.one_line() and "http://***@127.0.0.1:" in caught.value.one_line()
    with pytest.raises(BadInputError) as bad:
        list(stream_chat([{"role": "user", "content": "x"}], base_url=url + "\n", model="m"))
    assert "hunter2" not in bad.value.one_line()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, -1.0])
def test_timeouts_must_be_finite_and_positive(value: float) -> None:
    with pytest.raises(BadInputError, match="finite number of seconds > 0"):
        Timeouts(read_s=value)


def test_api_key_never_appears_in_errors() -> None:
    with pytest.raises(HTTPStatusError) as caught:
        run_sync(status_of(401, b'{"error": "Unauthorized"}'), api_key="sk-secret-123")
    assert "sk-secret-123" not in caught.value.one_line()


def test_a_shared_client_is_reused_across_streams() -> None:
    answer, seen = recording(stream_of(HELLO))
    with serving(answer) as server, httpx.Client() as client:
        for _ in range(2):
            assert "".join(d.content for d in stream_chat([{"role": "user", "content": "x"}], base_url=server.base_url,
                                                           model="m", client=client)) == "Hello! I am"
    assert len(seen) == 2


# ------------------------------------------------------------------- recorded captures from the real server
# tests/data/sse/README.md says how each was recorded (vLLM CPU 0.32, the tiny Qwen3, greedy).

SEA = "The sea is wide and deep. Waves roll in, waves roll out, and the tide keeps time for every shore."


@RUNNERS
@pytest.mark.parametrize("size", [1, 7, 4096])
def test_recorded_normal_stream(run: Run, size: int) -> None:
    deltas = run(stream_of(capture("normal.sse"), size=size), include_usage=False)
    assert deltas[0].role == "assistant"
    assert "".join(d.content for d in deltas) == SEA
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    assert sum(d.is_token for d in deltas) == 32  # 31 content chunks + the stop chunk, one token each here
    assert all(d.usage is None for d in deltas)


@RUNNERS
def test_recorded_stream_with_usage_and_merged_chunks(run: Run) -> None:
    deltas = run(stream_of(capture("with_usage.sse"), size=64))
    assert "".join(d.content for d in deltas) == SEA
    usage = deltas[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (14, 32)
    # vLLM merged four pairs of tokens into single chunks: chunks undercount, usage is the truth.
    assert sum(d.is_token for d in deltas) == 28


@RUNNERS
def test_recorded_in_band_error(run: Run) -> None:
    with pytest.raises(InBandError) as caught:
        run(stream_of(capture("inband_error.sse"), size=4096), max_tokens=3000)
    assert caught.value.message == (
        "the server reported an error inside the stream: "
        "EngineCore encountered an issue. See stack trace (above) for the root cause."
    )
    assert caught.value.error["code"] == 500
    assert caught.value.chunks > 1000  # everything generated before the kill still arrived
    assert caught.value.text_so_far.startswith("The sea is wide")


@RUNNERS
@pytest.mark.parametrize("trim", [0, 25])  # on an event boundary as recorded, and inside an event
def test_recorded_cut_mid_stream(run: Run, trim: int) -> None:
    raw = capture("cut_midstream.sse")
    raw = raw[: len(raw) - trim]
    with pytest.raises(StreamInterrupted) as caught:
        run(stream_of(raw, size=100, cut=True))
    complete = raw.count(b"\n\n")
    assert caught.value.chunks == complete - 1  # every complete event but the role announcement
    assert caught.value.text_so_far.startswith("The sea")
    assert "the connection broke" in caught.value.message


def test_malformed_and_non_json_events_raise_in_the_library() -> None:
    with pytest.raises(StreamError, match=r"chunk\.choices\[0\]\.delta\.content must be a string"):
        run_sync(stream_of(sse(wire({"content": 5})) + b"data: [DONE]\n\n"))
    with pytest.raises(StreamError, match="an event that is not JSON: 'hello'"):
        run_sync(stream_of(b"data: hello\n\ndata: [DONE]\n\n"))
    with pytest.raises(StreamError, match="an event that is not a JSON object: '\\[1\\]'"):
        run_sync(stream_of(b"data: [1]\n\ndata: [DONE]\n\n"))


@RUNNERS
@pytest.mark.parametrize(("usage", "why"), [
    ({"prompt_tokens": -5, "completion_tokens": -100_000, "total_tokens": 0}, "must not be negative"),
    ({"prompt_tokens": int("9" * 4300), "completion_tokens": 3, "total_tokens": 1}, "must be at most 2,147,483,647"),
])
def test_a_token_count_no_server_can_have_is_a_malformed_chunk(run: Run, usage: dict[str, int], why: str) -> None:
    """A 4,300-digit count overflowed the metrics (exit 4 in smoke-stream, tune and troubleshoot --probe); a
    negative one passed for a measurement that tune saved a profile on (audit 5)."""
    body = sse(wire({"content": "Hi"}), wire(usage=usage)) + b"data: [DONE]\n\n"
    with pytest.raises(StreamError, match=why):
        run(stream_of(body))


def test_scrubbing_masks_the_credentials_and_nothing_else() -> None:
    from qwenops.stream import Endpoint

    endpoint = Endpoint(base_url="http://a:b@127.0.0.1:8000", api_key="sk-secret-123")
    scrubbed = endpoint.scrub("a bad answer from http://a:b@127.0.0.1:8000 (key sk-secret-123, user a:b@)")
    assert scrubbed == "a bad answer from http://***@127.0.0.1:8000 (key ***, user ***@)"


def double_gzip_bomb(inflated: int) -> bytes:
    """INFLATED zero bytes, gzipped twice: a few KiB on the wire (httpx would inflate each chunk whole)."""
    import gzip

    return gzip.compress(gzip.compress(bytes(inflated), 9), 9)


def encoded_answer(seen: list[Seen], body: bytes, content_type: str = "text/event-stream") -> Answer:
    def answer(conn: Conn, request: Seen) -> None:
        seen.append(request)
        conn.send((f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-encoding: gzip, gzip\r\n"
                   f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body)

    return answer


@RUNNERS
def test_a_compressed_stream_is_refused_not_inflated(run: Run) -> None:
    seen: list[Seen] = []
    with pytest.raises(NotEventStream) as caught:
        run(encoded_answer(seen, double_gzip_bomb(256 << 20)))  # 256 MiB inflated, were it inflated
    assert caught.value.one_line().startswith(
        "the server compressed its answer (Content-Encoding 'gzip, gzip') though qwenops asked for none")
    assert seen[0].headers["accept-encoding"] == "identity"


def test_a_readiness_probe_ends_at_its_deadline_and_never_inflates() -> None:
    from qwenops.stream.resume import server_ready

    async def ready(base_url: str) -> bool:
        async with httpx.AsyncClient() as http:
            return await asyncio.wait_for(server_ready(http, base_url, "m", {}, timeout_s=0.5), HANG_S)

    # A /health and /v1/models that drip bytes forever: not ready, at the probe's deadline.
    with serving(forever([b": x\n"], every_s=0.05), answer_gets=True) as server:
        started = time.monotonic()
        assert asyncio.run(ready(server.base_url)) is False
        assert time.monotonic() - started < HANG_S / 2  # at its deadline, not when the server stops
        assert [s.path for s in server.seen] == ["/health", "/v1/models"]
    # A /v1/models listing the model inside a gzip bomb: not ready (a compressed body is not read).
    seen: list[Seen] = []
    with serving(encoded_answer(seen, double_gzip_bomb(256 << 20), "application/json"), answer_gets=True) as server:
        assert asyncio.run(ready(server.base_url)) is False
    assert [s.path for s in seen] == ["/health", "/v1/models"]
    assert {s.headers["accept-encoding"] for s in seen} == {"identity"}


@RUNNERS
def test_a_proxy_in_the_environment_never_carries_a_loopback_exchange(run: Run,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A host-wide HTTP_PROXY would otherwise get every prompt and the key in clear for a server on this machine."""
    with serving(status_of(502, b"{}")) as proxy:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy.base_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        assert [d.content for d in run(stream_of(HELLO), api_key="sk-local")][1:5] == ["Hello", "!", " I", " am"]
    assert proxy.seen == []


@pytest.mark.parametrize(("url", "allowed"), [
    ("http://127.0.0.1:8000", False), ("http://127.8.9.10:8000", False), ("http://localhost:8000", False),
    ("http://LOCALHOST.:8000", False), ("http://vllm.localhost", False), ("http://[::1]:8000", False),
    ("http://[::ffff:127.0.0.1]:8000", False), ("http://10.0.0.5:8000", True), ("https://api.example.com", True),
    # This machine spelt otherwise (audit 8): the address vLLM prints, the unspecified IPv6 address, IPv4 as
    # inet_aton reads it; numbers that are not this machine, or no address at all, may use the proxy.
    ("http://0.0.0.0:8000", False), ("http://[::]:8000", False), ("http://[::ffff:0.0.0.0]:8000", False),
    ("http://127.1:8000", False), ("http://2130706433:8000", False), ("http://0x7f.1:8000", False),
    ("http://0177.0.0.1:8000", False), ("http://0:8000", False), ("http://16777216:8000", True),
    ("http://999.1:8000", True), ("http://10.1:8000", True),
    # the host httpx connects to, not urlsplit's reading (audit 9): IDNA full stops are dots to httpx
    ("http://127\u30020\u30020\u30021:8000", False), ("http://127\uff0e0\uff0e0\uff0e1:8000", False),
    ("http://127\uff610\uff610\uff611:8000", False), ("http://0\u30020\u30020\u30020:8000", False),
    ("http://b\u00fccher.example:8000", False),  # kept non-ASCII by httpx: no proxy, whatever it is
])
def test_which_servers_may_be_reached_through_a_proxy(url: str, allowed: bool) -> None:
    from qwenops.net import proxy_allowed

    assert proxy_allowed(url) is allowed


def test_this_machines_own_name_never_goes_through_a_proxy() -> None:
    """Debian maps the host's own name to 127.0.1.1: `http://$(hostname):8000` is this machine too."""
    import socket

    from qwenops.net import proxy_allowed

    assert proxy_allowed(f"http://{socket.gethostname()}:8000") is False
    assert proxy_allowed(f"http://{socket.gethostname()}.example.com:8000") is True


def test_a_name_that_resolves_to_this_machine_never_goes_through_a_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit 10, F1: names /etc/hosts maps to this machine (`ip6-localhost`, `localhost.localdomain`, a host name on
    127.0.1.1) were "elsewhere" and the key went to HTTP_PROXY. With a proxy configured, a name is resolved as the
    connection will resolve it, and one that names a loopback address or one of this machine's own is this machine;
    an address of this machine's interfaces, spelt as a number, too. A name that does not resolve may use the proxy.
    Without a proxy nothing is resolved (the answer would change nothing)."""
    import ipaddress

    import psutil

    from qwenops import net

    asked: list[str] = []
    table = {"ip6-localhost": ["::1"], "box.example.org": ["127.0.1.1"], "far.example.org": ["203.0.113.7"]}

    def resolved(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        asked.append(host)
        return [ipaddress.ip_address(a) for a in table.get(host, [])]

    monkeypatch.setattr(net, "_resolved", resolved)
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert net.proxy_allowed("http://box.example.org:8000") is True and asked == []
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    assert net.proxy_allowed("http://ip6-localhost:8000") is False
    assert net.proxy_allowed("http://box.example.org:8000") is False
    assert net.proxy_allowed("http://far.example.org:8000") is True
    assert net.proxy_allowed("http://unknown.example.org:8000") is True
    own = next((a.address for addrs in psutil.net_if_addrs().values() for a in addrs
                if a.family.name == "AF_INET" and not a.address.startswith("127.")), None)
    if own is not None:  # a machine with a network interface besides loopback
        assert net.proxy_allowed(f"http://{own}:8000") is False


def test_this_machines_link_local_address_with_a_zone_never_goes_through_a_proxy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit 11: `http://[fe80::…%eth0]:8000` (or `%4`) is this machine's own link-local address; `ipaddress`
    compares the zone too, so it was "elsewhere" and the key went to the proxy. The zone names a link, not an
    address."""
    import ipaddress

    from qwenops import net

    monkeypatch.setattr(net, "_INTERFACES", [{ipaddress.ip_address("fe80::fc:ff:fe00:1")}])
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    for host in ("[fe80::fc:ff:fe00:1%eth0]", "[fe80::fc:ff:fe00:1%4]", "[fe80::fc:ff:fe00:1]", "[::1%lo]"):
        assert net.proxy_allowed(f"http://{host}:8000") is False, host
    assert net.proxy_allowed("http://[fe80::fc:ff:fe00:2%eth0]:8000") is True  # another machine on the link


def test_a_name_that_takes_long_to_resolve_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """getaddrinfo has no timeout: a DNS server that does not answer must not hold the command past
    RESOLVE_TIMEOUT_S; the name is then not this machine (the proxy may carry it, as it would anyway)."""
    import socket
    import threading

    from qwenops import net

    release = threading.Event()

    def stuck(*_args: object, **_kwargs: object) -> list[object]:
        release.wait(30)
        raise OSError("gave up")

    monkeypatch.setattr(socket, "getaddrinfo", stuck)
    monkeypatch.setattr(net, "RESOLVE_TIMEOUT_S", 0.2)
    try:
        assert net._resolved("slow.example.org") == []
    finally:
        release.set()


def test_the_address_vllm_prints_is_never_sent_through_a_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM prints `http://0.0.0.0:8000`, the URL users paste: its key and prompts stay off a host-wide proxy."""
    with serving(stream_of(HELLO)) as server, serving(status_of(502, b"{}")) as proxy:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy.base_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        wildcard = server.base_url.replace("127.0.0.1", "0.0.0.0")
        deltas = list(stream_chat([{"role": "user", "content": "hi"}], base_url=wildcard, model="Qwen3-14B",
                                  api_key="sk-local"))
        assert [d.content for d in deltas][1:3] == ["Hello", "!"]
    assert proxy.seen == []


def test_a_query_in_a_url_is_masked_wherever_it_is_shown() -> None:
    from qwenops.untrusted import mask_url

    assert mask_url("http://u:p@h:1/x?api_key=QUERYSECRET#f") == "http://***@h:1/x?***"
    with pytest.raises(BadInputError) as caught:
        list(stream_chat([{"role": "user", "content": "x"}], base_url="http://h:1/?api_key=QUERYSECRET", model="m"))
    assert "QUERYSECRET" not in caught.value.one_line() and "?query" in caught.value.one_line()
