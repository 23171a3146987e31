"""Resume (`stream_chat(..., resume=Resume())`) against a scripted vLLM on a real local socket
(tests/sse_server.py): chat completions with `return_token_ids`, plain completions from token ids,
`/health` and `/v1/models`. Its model is a deterministic function of the token ids so far, so an
answer continued from the ids delivered must equal the uncut answer, token for token; each test
scripts where the stream breaks (a cut, an in-band error, a 5xx, a server that never comes back)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from qwenops.errors import BadInputError, InBandError, StreamInterrupted, StreamTimeout
from qwenops.stream import ChatDelta, Resume, Timeouts, astream_chat, not_resumable, stream_chat
from tests.sse_server import Conn, ScriptedServer, Seen, serving

PROMPT = [1, 2, 3]
THINK_END_ID = 99
FAST = Resume(attempts=3, deadline_s=30, ready_s=10, poll_s=0.02)


def next_token(context: list[int]) -> int:
    """The scripted model: the next id depends on every id before it, as a real model's does."""
    return (sum(context) * 7 + len(context)) % 40 + 10


def piece(token: int) -> str:
    return "</think>" if token == THINK_END_ID else f"w{token} "


@dataclass
class FakeVLLM:
    """What the server does on each request, in order: `chat` and `completions` are lists of plans
    ("ok", "cut:N" closes the connection after N tokens, "error:N" sends an in-band error after N,
    "abort:N" ends the answer after N with finish_reason "abort", usage and [DONE], as vLLM does when its
    engine is shut down, "500"); `health` is a list of status codes for /health (the last repeats);
    `thinking`: the first tokens are reasoning, ended by `</think>` after `thinking` of them; `ids`: whether
    token ids are sent."""

    chat: list[str] = field(default_factory=lambda: ["ok"])
    completions: list[str] = field(default_factory=lambda: ["ok"])
    health: list[int] = field(default_factory=lambda: [200])
    thinking: int = 0
    ids: bool = True
    empty_ids: bool = False  # `token_ids: []` beside the text (a server that says nothing about its tokens)
    bodies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def tokens(self, context: list[int], count: int) -> list[int]:
        out: list[int] = []
        for _ in range(count):
            generated = len(context) + len(out) - len(PROMPT)
            token = THINK_END_ID if self.thinking and generated == self.thinking else next_token(context + out)
            out.append(token)
        return out

    def __call__(self, conn: Conn, seen: Seen) -> None:
        if seen.method == "GET":
            self.get(conn, seen.path)
            return
        body = json.loads(seen.body)
        with self.lock:
            self.bodies.append((seen.path, body))
            plans = self.chat if seen.path == "/v1/chat/completions" else self.completions
            plan = plans.pop(0) if len(plans) > 1 else plans[0]
        if plan == "500":
            data = b'{"error": {"message": "EngineCore encountered an issue", "code": 500}}'
            conn.head(500, "application/json", length=len(data))
            conn.send(data)
            return
        conn.head(200, "text/event-stream", chunked=True)
        kind, _, after = plan.partition(":")
        if seen.path == "/v1/chat/completions":
            self.answer_chat(conn, body, kind, int(after or 0))
        else:
            self.answer_completion(conn, body, kind, int(after or 0))

    def get(self, conn: Conn, path: str) -> None:
        with self.lock:
            status = self.health.pop(0) if len(self.health) > 1 else self.health[0]
        data = b"" if path == "/health" else json.dumps({"data": [{"id": "Qwen3-14B"}]}).encode()
        conn.head(status if path == "/health" else 200, "application/json", length=len(data))
        conn.send(data)

    def events(self, conn: Conn, chunks: list[dict[str, Any]], kind: str, after: int) -> None:
        for sent, chunk in enumerate(chunks):
            if kind in ("cut", "error", "abort") and sent == after:
                if kind == "error":
                    conn.chunk(b'data: {"error": {"message": "EngineCore died", "code": 500}}\n\n')
                    conn.end_chunks()
                if kind == "abort":  # as vLLM ends what is in flight when its engine is shut down
                    choice: dict[str, Any] = {"index": 0, "finish_reason": "abort"}
                    if chunk.get("object") == "text_completion":
                        choice["text"] = ""
                    else:
                        choice["delta"] = {}
                    ended = {**{k: chunk[k] for k in ("id", "object", "model")}, "choices": [choice]}
                    usage = {"prompt_tokens": len(PROMPT), "completion_tokens": after, "total_tokens": after}
                    conn.chunk(f"data: {json.dumps(ended)}\n\n".encode())
                    conn.chunk(f"data: {json.dumps({**ended, 'choices': [], 'usage': usage})}\n\n".encode())
                    conn.chunk(b"data: [DONE]\n\n")
                    conn.end_chunks()
                return  # cut: the connection closes without the last chunk
            conn.chunk(f"data: {json.dumps(chunk)}\n\n".encode())
        conn.chunk(b"data: [DONE]\n\n")
        conn.end_chunks()

    def answer_chat(self, conn: Conn, body: dict[str, Any], kind: str, after: int) -> None:
        ids = self.ids and body.get("return_token_ids")
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": body["model"]}
        role = {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
        if ids:
            role["prompt_token_ids"] = PROMPT
        conn.chunk(f"data: {json.dumps(role)}\n\n".encode())
        tokens = self.tokens(list(PROMPT), body["max_tokens"])
        chunks = []
        thinking = bool(self.thinking)
        for index, token in enumerate(tokens):
            if token == THINK_END_ID:
                thinking, delta = False, {}
            else:
                delta = {"reasoning": piece(token)} if thinking else {"content": piece(token)}
            choice: dict[str, Any] = {"index": 0, "delta": delta,
                                      "finish_reason": "length" if index == len(tokens) - 1 else None}
            if ids:
                choice["token_ids"] = [] if self.empty_ids else [token]
            chunks.append({**base, "choices": [choice]})
        usage = {"prompt_tokens": len(PROMPT), "completion_tokens": len(tokens),
                 "total_tokens": len(PROMPT) + len(tokens)}
        chunks.append({**base, "choices": [], "usage": usage})
        self.events(conn, chunks, kind, after)

    def answer_completion(self, conn: Conn, body: dict[str, Any], kind: str, after: int) -> None:
        prompt = body["prompt"]
        tokens = self.tokens(list(prompt), body["max_tokens"])
        base = {"id": "cmpl-2", "object": "text_completion", "model": body["model"]}
        chunks = []
        for index, token in enumerate(tokens):
            choice: dict[str, Any] = {"index": 0, "text": piece(token), "token_ids": [token],
                                      "finish_reason": "length" if index == len(tokens) - 1 else None}
            if index == 0:
                choice["prompt_token_ids"] = prompt
            chunks.append({**base, "choices": [choice]})
        usage = {"prompt_tokens": len(prompt), "completion_tokens": len(tokens),
                 "total_tokens": len(prompt) + len(tokens)}
        chunks.append({**base, "choices": [], "usage": usage})
        self.events(conn, chunks, kind, after)

    def paths(self) -> list[str]:
        return [path for path, _ in self.bodies]


ASK: dict[str, Any] = {"model": "Qwen3-14B", "temperature": 0.0, "top_p": 1.0, "max_tokens": 24,
                       "extra_body": {"seed": 7, "ignore_eos": True, "top_k": 1}}


@contextlib.contextmanager
def fake(server: FakeVLLM) -> Iterator[str]:
    """The scripted vLLM on a free local port (GETs too: /health, /v1/models); its base URL."""
    http = ScriptedServer(server, answer_gets=True)
    try:
        yield http.base_url
    finally:
        http.close()


def run_sync(server: FakeVLLM, **kwargs: Any) -> list[ChatDelta]:
    with fake(server) as base_url:
        return list(stream_chat([{"role": "user", "content": "Say hello."}], base_url=base_url,
                                **{**ASK, **kwargs}))


def run_async(server: FakeVLLM, **kwargs: Any) -> list[ChatDelta]:
    async def main(base_url: str) -> list[ChatDelta]:
        stream = astream_chat([{"role": "user", "content": "Say hello."}], base_url=base_url, **{**ASK, **kwargs})
        return [delta async for delta in stream]

    with fake(server) as base_url:
        return asyncio.run(main(base_url))


RUNNERS = pytest.mark.parametrize("run", [run_sync, run_async], ids=["sync", "async"])
Run = Callable[..., list[ChatDelta]]


def ids(deltas: list[ChatDelta]) -> list[int]:
    return [token for delta in deltas for token in delta.token_ids or ()]


def text(deltas: list[ChatDelta]) -> tuple[str, str]:
    return "".join(d.reasoning_content for d in deltas), "".join(d.content for d in deltas)


def reference(**kwargs: Any) -> list[ChatDelta]:
    return run_async(FakeVLLM(), extra_body={**ASK["extra_body"], "return_token_ids": True}, **kwargs)


@RUNNERS
def test_a_cut_stream_resumes_from_the_delivered_ids_and_equals_the_uncut_answer(run: Run) -> None:
    uncut = reference()
    server = FakeVLLM(chat=["cut:10"])
    deltas = run(server, resume=FAST)
    assert ids(deltas) == ids(uncut) and len(ids(deltas)) == 24
    assert text(deltas) == text(uncut)
    marks = [d for d in deltas if d.resumed is not None]
    assert len(marks) == 1
    mark = marks[0]
    assert (mark.resumed.after_tokens, mark.resumed.attempt) == (10, 1)  # type: ignore[union-attr]
    assert mark.resumed.gap_ms >= 0 and not mark.has_choice and not mark.tokens  # type: ignore[union-attr]
    assert ids(deltas[: deltas.index(mark)]) == ids(uncut)[:10]
    assert {d.id for d in deltas} == {"chatcmpl-1"}
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["length"]
    usage = [d.usage for d in deltas if d.usage is not None]
    assert len(usage) == 1 and (usage[0].prompt_tokens, usage[0].completion_tokens) == (3, 24)
    assert server.paths() == ["/v1/chat/completions", "/v1/completions"]
    chat_body, continuation = (body for _, body in server.bodies)
    assert chat_body["return_token_ids"] is True
    assert continuation["prompt"] == PROMPT + ids(uncut)[:10]
    assert continuation["max_tokens"] == 14
    for key in ("temperature", "top_p", "seed", "ignore_eos", "top_k"):
        assert continuation[key] == chat_body[key]
    assert continuation["return_token_ids"] is True and continuation["stream"] is True
    assert "messages" not in continuation


@RUNNERS
def test_an_in_band_engine_error_resumes(run: Run) -> None:
    deltas = run(FakeVLLM(chat=["error:5"]), resume=FAST)
    assert ids(deltas) == ids(reference())
    assert [d.resumed.after_tokens for d in deltas if d.resumed] == [5]


@RUNNERS
def test_an_answer_the_server_ended_with_finish_reason_abort_resumes(run: Run) -> None:
    # vLLM 0.32 on SIGTERM (a supervisor's restart, a stop) aborts what is in flight: the stream ends with
    # finish_reason "abort", usage and [DONE], a cut answer that looks whole on the wire.
    deltas = run(FakeVLLM(chat=["abort:7"], completions=["abort:4", "ok"]), resume=FAST)
    assert ids(deltas) == ids(reference()) and text(deltas) == text(reference())
    assert [d.resumed.after_tokens for d in deltas if d.resumed] == [7, 11]
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["length"]


@RUNNERS
def test_without_resume_an_aborted_answer_is_an_interruption_not_a_finish(run: Run) -> None:
    with pytest.raises(StreamInterrupted) as caught:
        run(FakeVLLM(chat=["abort:7"]))
    assert caught.value.chunks == 7 and "finish_reason 'abort'" in caught.value.message
    assert caught.value.text_so_far == text(reference())[1][:len(caught.value.text_so_far)] != ""


def test_a_5xx_while_restarting_then_ready_resumes_on_a_later_attempt() -> None:
    server = FakeVLLM(chat=["cut:8"], completions=["500", "ok"], health=[503, 503, 200])
    deltas = run_sync(server, resume=FAST)
    assert ids(deltas) == ids(reference())
    assert [(d.resumed.after_tokens, d.resumed.attempt) for d in deltas if d.resumed] == [(8, 2)]
    assert server.paths() == ["/v1/chat/completions", "/v1/completions", "/v1/completions"]


@RUNNERS
def test_a_second_cut_resumes_again_from_all_ids_so_far(run: Run) -> None:
    server = FakeVLLM(chat=["cut:6"], completions=["cut:5", "ok"])
    deltas = run(server, resume=FAST)
    assert ids(deltas) == ids(reference())
    assert [(d.resumed.after_tokens, d.resumed.attempt) for d in deltas if d.resumed] == [(6, 1), (11, 2)]
    assert server.bodies[-1][1]["max_tokens"] == 24 - 11


def test_a_server_never_ready_again_raises_the_original_error_with_the_partial_answer() -> None:
    server = FakeVLLM(chat=["cut:7"], health=[503])
    got: list[ChatDelta] = []
    with fake(server) as base_url, pytest.raises(StreamInterrupted) as caught:
        for delta in stream_chat([{"role": "user", "content": "x"}], base_url=base_url,
                                 resume=Resume(ready_s=0.5, poll_s=0.05), **ASK):
            got.append(delta)
    assert caught.value.chunks == 7 and caught.value.text_so_far == text(got)[1] != ""
    assert "not resumed: the server was not ready again" in (caught.value.hint or "")
    assert server.paths() == ["/v1/chat/completions"]


def test_attempts_exhausted_raise_the_last_cut_with_everything_delivered() -> None:
    server = FakeVLLM(chat=["cut:4"], completions=["cut:2"])
    got: list[ChatDelta] = []
    with fake(server) as base_url, pytest.raises(StreamInterrupted) as caught:
        for delta in stream_chat([{"role": "user", "content": "x"}], base_url=base_url,
                                 resume=Resume(attempts=2, poll_s=0.02), **ASK):
            got.append(delta)
    assert caught.value.chunks == 4 + 2 + 2 == len(ids(got))
    assert ids(got) == ids(reference())[:8]
    assert "not resumed: 2 attempt(s) made" in (caught.value.hint or "")
    assert server.paths() == ["/v1/chat/completions", "/v1/completions", "/v1/completions"]


@RUNNERS
def test_a_cut_before_the_first_token_is_a_plain_retry(run: Run) -> None:
    server = FakeVLLM(chat=["cut:0", "ok"])
    deltas = run(server, resume=FAST)
    assert ids(deltas) == ids(reference())
    assert not any(d.resumed for d in deltas)
    assert [d.role for d in deltas if d.role] == ["assistant"]  # the retry's role chunk is not repeated
    assert server.paths() == ["/v1/chat/completions", "/v1/chat/completions"]


def test_a_cut_inside_the_reasoning_routes_the_rest_until_think_end_to_reasoning() -> None:
    uncut = run_async(FakeVLLM(thinking=12), extra_body={**ASK["extra_body"], "return_token_ids": True})
    reasoning, content = text(uncut)
    assert reasoning and content and "</think>" not in reasoning + content
    deltas = run_async(FakeVLLM(chat=["cut:5"], thinking=12), resume=FAST)
    assert text(deltas) == (reasoning, content)
    assert ids(deltas) == ids(uncut)


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"n": 2}, "n = 2"),
        ({"logprobs": True, "top_logprobs": 2}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"some_new_knob": 1}, "some_new_knob"),
    ],
    ids=["tools", "n", "logprobs", "guided", "unknown"],
)
def test_requests_that_must_not_be_repeated_raise_as_without_resume(extra: dict[str, Any], why: str) -> None:
    server = FakeVLLM(chat=["cut:5"])
    with pytest.raises(StreamInterrupted) as caught:
        run_sync(server, resume=FAST, extra_body={**ASK["extra_body"], **extra})
    assert caught.value.chunks == 5
    assert f"not resumed: {why}" in (caught.value.hint or "")
    assert server.paths() == ["/v1/chat/completions"]
    assert "return_token_ids" not in server.bodies[0][1]


def test_a_server_without_token_ids_makes_resume_a_no_op_that_says_why() -> None:
    server = FakeVLLM(chat=["error:5"], ids=False)
    with pytest.raises(InBandError) as caught:
        run_sync(server, resume=FAST)
    assert caught.value.chunks == 5
    assert "not resumed: the server sent no token ids" in (caught.value.hint or "")
    assert server.paths() == ["/v1/chat/completions"]


def test_text_without_its_token_ids_is_not_retried_as_if_nothing_came() -> None:
    """Audit 7: text with `token_ids: []`, then a cut, looked like a cut before the first token, and the plain retry
    sent the same text again (4 times, with no `resumed` marker). Text delivered without ids cannot be resumed."""
    server = FakeVLLM(chat=["cut:3"], empty_ids=True)
    with pytest.raises(StreamInterrupted) as caught:
        run_sync(server, resume=FAST)
    assert "not resumed: the server sent text without its token ids" in (caught.value.hint or "")
    assert caught.value.text_so_far and server.paths() == ["/v1/chat/completions"]


def test_without_resume_a_cut_raises_as_before() -> None:
    server = FakeVLLM(chat=["cut:5"])
    with pytest.raises(StreamInterrupted) as caught:
        run_sync(server)
    assert caught.value.chunks == 5 and "not resumed" not in (caught.value.hint or "")
    assert "return_token_ids" not in server.bodies[0][1]


def test_silence_is_not_resumed() -> None:
    """A read timeout may mean a stalled engine still generating: a second request would duplicate it."""

    def silent(conn: Conn, seen: Seen) -> None:
        conn.head(200, "text/event-stream", chunked=True)
        conn.sleep(5)

    with serving(silent) as http, pytest.raises(StreamTimeout):
        list(stream_chat([{"role": "user", "content": "x"}], base_url=http.base_url, resume=FAST,
                         timeouts=Timeouts(read_s=0.3), **ASK))
    assert len(http.seen) == 1


def test_not_resumable_and_resume_options() -> None:
    assert not_resumable({"model": "m", "messages": [], "temperature": 0, "n": 1, "tools": [],
                          "tool_choice": "none", "logprobs": False, "chat_template_kwargs": {}}) is None
    assert "tool" in (not_resumable({"tool_choice": "auto"}) or "")
    with pytest.raises(BadInputError) as caught:
        Resume(attempts=0)
    assert caught.value.field == "resume.attempts"
    with pytest.raises(BadInputError) as caught:
        Resume(ready_s=float("nan"))
    assert caught.value.field == "resume.ready_s"
    import httpx

    with httpx.Client() as client, pytest.raises(BadInputError) as caught:
        list(stream_chat([], base_url="http://127.0.0.1:9", model="m", client=client, resume=Resume()))
    assert caught.value.field == "client"


# ------------------------------------------------------------------- a hostile server's readiness answers


@pytest.mark.parametrize(("models", "ready"), [
    (b'{"data": [{"id": "m"}]}', True),
    (b'{"data": [{"id": "other"}]}', False),
    (b"[" * 200_000, False),  # nested past the parser's recursion limit: not ready, never a crash
    (b'{"data": [' + b'{"id": "x"},' * 200_000 + b'{"id": "m"}]}', False),  # over the byte cap
    (b"<html>login</html>", False),
])
def test_readiness_reads_models_bounded_and_never_crashes(models: bytes, ready: bool) -> None:
    """The one readiness rule (resume and the gateway): /health 200 and /v1/models listing the model,
    its body read bounded; a hostile answer is 'not ready', not an exception that kills the prober."""
    import httpx

    from qwenops.stream.resume import server_ready
    from tests.unit.test_status_hostile import Site, reply

    site = Site({"/health": reply(200, b""), "/v1/models": reply(200, models)})
    try:
        async def probe() -> bool:
            async with httpx.AsyncClient() as http:
                return await server_ready(http, site.url, "m", {}, 10.0)

        assert asyncio.run(probe()) is ready
    finally:
        site.close()


def test_a_chunk_nested_past_the_recursion_limit_is_not_json() -> None:
    from qwenops.stream.chunks import decode_event

    decoded = decode_event("[" * 200_000, 0.0)
    assert decoded.kind == "not_json"


def test_the_ids_kept_for_a_resume_cost_four_bytes_each() -> None:
    """A hostile first chunk of a million large prompt ids (all one event allows) is kept as 4-byte machine
    ints for the answer's life, not as a list of int objects (~36 bytes each: audit 7, A7-3)."""
    import tracemalloc

    from qwenops.stream.chunks import decode_event
    from qwenops.stream.resume import _Progress

    ids = [2**31 - 1 - n for n in range(1_000_000)]
    data = json.dumps({"id": "c", "object": "chat.completion.chunk", "model": "m", "prompt_token_ids": ids,
                       "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "finish_reason": None}]})
    del ids
    progress = _Progress(include_usage=True)
    tracemalloc.start()
    try:
        decoded = decode_event(data, 0.0).delta
        assert isinstance(decoded, ChatDelta)
        progress.take(decoded)
        del decoded
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert progress.prompt_ids is not None and len(progress.prompt_ids) == 1_000_000
    assert progress.prompt_ids[0] == 2**31 - 1
    assert kept < 6_000_000, f"{kept:,} bytes kept for 1,000,000 ids"
