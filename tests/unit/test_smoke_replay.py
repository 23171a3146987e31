"""smoke-stream end to end over a real socket, without the engine: a stdlib HTTP server replays the
recorded vLLM captures (tests/data/sse/README.md), so the whole path (asyncio, httpx, parser, checks,
metrics, CLI, exit codes) runs in every CI, not only where the vLLM CPU engine is installed."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from qwenops.cli import cli
from qwenops.smoke import SmokeOptions, run_smoke
from tests.conftest import REPO

SSE = REPO / "tests" / "data" / "sse"
PROMPT = "Tell me about the sea."  # the prompt every capture was recorded with


class Replay(BaseHTTPRequestHandler):
    """Answers every POST with one capture as recorded, or with the status and body it is told; GET
    /v1/models lists Qwen3-14B with `root` as its model path, as vLLM does."""

    capture: Path | None = None
    status = 200
    body = b""
    root = "/models/Qwen/Qwen3-14B"  # what a GPU box's vLLM reports: not a tiny model on this host
    hold: threading.Event | None = None  # when set, the stream stalls after its headers until it fires
    seen: list[dict[str, object]] = []  # noqa: RUF012 -- one server per test; the test reads it back

    def do_GET(self) -> None:
        body = json.dumps({"object": "list", "data": [{"id": "Qwen3-14B", "object": "model", "root": self.root}]})
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        type(self).seen.append(json.loads(self.rfile.read(length)))
        if self.capture is None:
            self.send_response(self.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(self.body)))
            self.end_headers()
            self.wfile.write(self.body)
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("connection", "close")  # no length: the body ends when the socket closes
        self.end_headers()
        if self.hold is not None:
            self.wfile.flush()
            self.hold.wait(10)
        self.wfile.write(self.capture.read_bytes())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def replay() -> Iterator[type[Replay]]:
    handler = type("ReplayForTest", (Replay,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.base_url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


def options(base_url: str, **kwargs: object) -> SmokeOptions:
    fields: dict[str, object] = {"base_url": base_url, "model": "Qwen3-14B", "prompt": PROMPT,
                                 "max_tokens": 128, **kwargs}
    return SmokeOptions(**fields)  # type: ignore[arg-type]


@pytest.fixture
def tiny_model_root(tmp_path: Path) -> str:
    """A directory that holds what `qwenops model build-tiny` stamps a model with (its known answers)."""
    from qwenops import tinymodel

    root = tmp_path / "qwen3-tiny"
    root.mkdir()
    stamp = {"key": "test", "seed": 0, "parameters": 1, "known_answers": tinymodel.KNOWN_PROMPTS}
    (root / tinymodel._STAMP_NAME).write_text(json.dumps(stamp), encoding="utf-8")
    return str(root)


def test_recorded_stream_with_usage_passes(replay: type[Replay], tiny_model_root: str) -> None:
    replay.capture = SSE / "with_usage.sse"
    replay.root = tiny_model_root
    report = run_smoke(options(replay.base_url, concurrency=2, requests=3))  # type: ignore[attr-defined]
    assert report.ok, [c for c in report.checks if not c.ok]
    assert report.streams_ok == 3 and report.output_tokens == 96
    coherence = next(c for c in report.checks if c.name == "coherence")
    assert not coherence.skipped
    # what smoke-stream asked for: usage, token ids, the prompt, greedy sampling from the options
    body = replay.seen[0]
    assert body["stream_options"] == {"include_usage": True} and body["return_token_ids"] is True
    assert body["messages"] == [{"role": "user", "content": PROMPT}] and body["temperature"] == 0.0


def test_recorded_cut_reports_stream_interrupted_with_partial_tokens(replay: type[Replay]) -> None:
    replay.capture = SSE / "cut_midstream.sse"
    report = run_smoke(options(replay.base_url))  # type: ignore[attr-defined]
    stream = report.streams[0]
    assert stream.error is not None and stream.error.code == "stream_interrupted"
    assert stream.partial_tokens == 19  # 20 events arrived: the role announcement and 19 tokens
    assert not report.ok
    # the same words as the library's StreamInterrupted (one decoder, one reader), naming no missing command
    assert stream.error.hint == "check the server's log: its engine may have died"


def test_recorded_in_band_error_fails_its_check(replay: type[Replay]) -> None:
    replay.capture = SSE / "inband_error.sse"
    report = run_smoke(options(replay.base_url, include_usage=False))  # type: ignore[attr-defined]
    failed = {c.name for c in report.checks if not c.ok}
    assert "no_in_band_error" in failed
    assert "EngineCore encountered an issue" in next(c.detail for c in report.checks if c.name == "no_in_band_error")


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [(401, b'{"error": "Unauthorized"}', "unauthorized"),
     (404, b'{"error": {"message": "The model `Qwen3-14B` does not exist."}}', "model_not_found")],
)
def test_cli_http_errors_exit_1_with_their_own_error(replay: type[Replay], status: int, body: bytes, code: str) -> None:
    replay.status, replay.body = status, body
    result = CliRunner().invoke(cli, ["smoke-stream", "--base-url", replay.base_url, "--json"],  # type: ignore[attr-defined]
                                catch_exceptions=False)
    assert result.exit_code == 1
    envelope = json.loads(result.stdout)
    assert [e["code"] for e in envelope["errors"]] == [code]
    assert envelope["data"]["checks"][0] == {"name": "http_status", "ok": False, "skipped": False,
                                             "detail": envelope["data"]["checks"][0]["detail"]}


def test_cli_text_output_and_junit(replay: type[Replay], tmp_path: Path) -> None:
    replay.capture = SSE / "with_usage.sse"
    junit = tmp_path / "out.xml"
    result = CliRunner().invoke(cli, ["smoke-stream", "--base-url", replay.base_url,  # type: ignore[attr-defined]
                                      "--junit", str(junit)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("smoke-stream PASS: 1/1 streams ok")
    assert result.stderr == ""
    assert 'failures="0"' in junit.read_text()


def sse_capture(path: Path, *chunks: object) -> Path:
    """A stream of these chunks (JSON-encoded unless already text) then `[DONE]`, as vLLM frames it."""
    events = [c if isinstance(c, str) else json.dumps(c) for c in chunks]
    path.write_text("".join(f"data: {e}\n\n" for e in [*events, "[DONE]"]), encoding="utf-8")
    return path


def wire_chunk(**fields: object) -> dict[str, object]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "Qwen3-14B", **fields}


def answer_chunks(text: str) -> list[dict[str, object]]:
    """The chunks of a well-formed answer: role, one chunk per word, the stop token, usage."""
    words = [w + " " for w in text.split(" ")]
    words[-1] = words[-1].rstrip()
    tokens = len(words) + 1
    return [
        wire_chunk(choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]),
        *(wire_chunk(choices=[{"index": 0, "delta": {"content": word}, "finish_reason": None}]) for word in words),
        wire_chunk(choices=[{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}]),
        wire_chunk(choices=[], usage={"prompt_tokens": 9, "completion_tokens": tokens, "total_tokens": 9 + tokens}),
    ]


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, object], str]:
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "qwenops", "smoke-stream", "--json", *args],
                          capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
                          env={**os.environ, **(env or {})})
    return done.returncode, json.loads(done.stdout), done.stderr


@pytest.mark.parametrize(
    ("bad", "named"),
    [(wire_chunk(choices=["x"]), "chunk.choices[0] must be an object"),
     (wire_chunk(choices=5), "chunk.choices must be an array"),
     (wire_chunk(choices=[], usage=5), "chunk.usage must be an object"),
     (wire_chunk(choices=[], usage={"prompt_tokens": "a"}), "chunk.usage.prompt_tokens must be an integer"),
     (wire_chunk(choices=[{"index": 0, "delta": {"content": 5}}]), "chunk.choices[0].delta.content must be a string")],
)
def test_malformed_chunk_is_a_failed_check_and_a_stream_error(
    replay: type[Replay], tmp_path: Path, bad: dict[str, object], named: str
) -> None:
    from qwenops.errors import StreamError
    from qwenops.stream import stream_chat

    good = answer_chunks("Hello there")
    replay.capture = sse_capture(tmp_path / "bad.sse", good[0], bad, *good[1:])
    code, envelope, stderr = run_cli("--base-url", replay.base_url)  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    assert code == 1, envelope
    data = envelope["data"]
    assert isinstance(data, dict)
    chunk_object = next(c for c in data["checks"] if c["name"] == "chunk_object")
    assert not chunk_object["ok"] and named in chunk_object["detail"]

    with pytest.raises(StreamError, match=named.replace("[", r"\[").replace("]", r"\]")):
        list(stream_chat([{"role": "user", "content": PROMPT}], base_url=replay.base_url,  # type: ignore[attr-defined]
                         model="Qwen3-14B", temperature=0.0, top_p=1.0, max_tokens=8))


def test_unparsable_base_url_is_bad_input() -> None:
    code, envelope, stderr = run_cli("--base-url", "http://[::1")
    assert "Traceback" not in stderr
    assert code == 2
    assert envelope["errors"] == [{"code": "bad_input", "field": "--base-url", "hint": None,
                                   "message": "'http://[::1' is not a URL: Invalid IPv6 URL"}]


@pytest.mark.parametrize("url", ["http://[::1", "ftp://127.0.0.1/"])
def test_library_rejects_an_unusable_base_url(url: str) -> None:
    from qwenops.errors import BadInputError
    from qwenops.stream import stream_chat

    with pytest.raises(BadInputError, match="not a usable URL") as raised:
        list(stream_chat([{"role": "user", "content": "x"}], base_url=url, model="m", temperature=0.0,
                         top_p=1.0, max_tokens=1))
    assert raised.value.field == "base_url"


def test_api_key_that_is_not_a_header_value_is_bad_input_and_not_printed(replay: type[Replay]) -> None:
    from qwenops.errors import BadInputError
    from qwenops.stream import stream_chat

    replay.capture = SSE / "with_usage.sse"
    with pytest.raises(BadInputError) as raised:
        list(stream_chat([{"role": "user", "content": PROMPT}], base_url=replay.base_url,  # type: ignore[attr-defined]
                         api_key="sk-secret\nvalue", model="Qwen3-14B", temperature=0.0, top_p=1.0, max_tokens=8))
    assert raised.value.field == "api_key" and "sk-secret" not in raised.value.one_line()

    code, envelope, stderr = run_cli("--base-url", replay.base_url,  # type: ignore[attr-defined]
                                     env={"QWENOPS_API_KEY": "sk-secret\nvalue"})
    assert code == 2, envelope
    assert "sk-secret" not in json.dumps(envelope) + stderr and "Traceback" not in stderr


def test_transport_errors_beyond_connect_are_unreachable(replay: type[Replay]) -> None:
    """A pool with its only connection busy raises httpx.PoolTimeout: no answer can come, exit 3."""
    import httpx

    from qwenops.errors import UnreachableError
    from qwenops.stream import Timeouts, stream_chat

    replay.capture = SSE / "with_usage.sse"
    replay.hold = threading.Event()
    base_url: str = replay.base_url  # type: ignore[attr-defined]
    asked = {"base_url": base_url, "model": "Qwen3-14B", "temperature": 0.0, "top_p": 1.0, "max_tokens": 8}
    messages = [{"role": "user", "content": PROMPT}]
    with httpx.Client(limits=httpx.Limits(max_connections=1)) as client:
        first = stream_chat(messages, client=client, timeouts=Timeouts(connect_s=0.3), **asked)  # type: ignore[arg-type]
        waiting = threading.Thread(target=lambda: next(first, None), daemon=True)
        waiting.start()  # it holds the pool's one connection while the server stalls
        time.sleep(0.3)
        try:
            with pytest.raises(UnreachableError, match="PoolTimeout"):
                list(stream_chat(messages, client=client, timeouts=Timeouts(connect_s=0.3), **asked))  # type: ignore[arg-type]
        finally:
            replay.hold.set()
            waiting.join(10)
            first.close()


def test_coherence_is_skipped_when_the_served_model_is_not_the_tiny_one(replay: type[Replay], tmp_path: Path) -> None:
    """A real Qwen3-14B served as Qwen3-14B answers the known prompt in its own words: no failure."""
    replay.capture = sse_capture(tmp_path / "real.sse", *answer_chunks("The sea covers most of the Earth."))
    code, envelope, _ = run_cli("--base-url", replay.base_url, "--prompt", PROMPT)  # type: ignore[attr-defined]
    assert code == 0, envelope
    data = envelope["data"]
    assert isinstance(data, dict)
    coherence = next(c for c in data["checks"] if c["name"] == "coherence")
    assert coherence["skipped"] and "/models/Qwen/Qwen3-14B is not qwenops' tiny model" in coherence["detail"]


def test_coherence_fails_when_the_tiny_model_answers_wrong(
    replay: type[Replay], tmp_path: Path, tiny_model_root: str
) -> None:
    replay.capture = sse_capture(tmp_path / "wrong.sse", *answer_chunks("The sea covers most of the Earth."))
    replay.root = tiny_model_root
    report = run_smoke(options(replay.base_url))  # type: ignore[attr-defined]
    coherence = next(c for c in report.checks if c.name == "coherence")
    assert not coherence.ok and "differs from the known" in coherence.detail
