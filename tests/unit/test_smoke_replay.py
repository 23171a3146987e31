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
from typing import Any

import pytest
from click.testing import CliRunner

from qwenops.cli import cli
from qwenops.smoke.run import SmokeOptions, run_smoke
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
    base_url = ""  # the replay fixture's server
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
    class ReplayForTest(Replay):  # this test's own class attributes, its own list of requests seen
        seen: list[dict[str, object]] = []  # noqa: RUF012

    handler = ReplayForTest
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    yield handler
    server.shutdown()
    server.server_close()


def options(base_url: str, **kwargs: object) -> SmokeOptions:
    fields: dict[str, object] = {"base_url": base_url, "model": "Qwen3-14B", "prompt": PROMPT,
                                 "max_tokens": 128, **kwargs}
    return SmokeOptions(**fields)


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
    report = run_smoke(options(replay.base_url, concurrency=2, requests=3))
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
    report = run_smoke(options(replay.base_url))
    stream = report.streams[0]
    assert stream.error is not None and stream.error.code == "stream_interrupted"
    assert stream.partial_tokens == 19  # 20 events arrived: the role announcement and 19 tokens
    assert not report.ok
    # the same words as the library's StreamInterrupted (one decoder, one reader), naming no missing command
    assert stream.error.hint == "check the server's log: its engine may have died"


def test_recorded_in_band_error_fails_its_check(replay: type[Replay]) -> None:
    replay.capture = SSE / "inband_error.sse"  # recorded with max_tokens 3000: 1,228 chunks before the error
    report = run_smoke(options(replay.base_url, include_usage=False, max_tokens=3000))
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
    result = CliRunner().invoke(cli, ["smoke-stream", "--base-url", replay.base_url, "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 1
    envelope = json.loads(result.stdout)
    assert [e["code"] for e in envelope["errors"]] == [code]
    assert envelope["data"]["checks"][0] == {"name": "http_status", "ok": False, "skipped": False,
                                             "detail": envelope["data"]["checks"][0]["detail"]}


def test_cli_text_output_and_junit(replay: type[Replay], tmp_path: Path) -> None:
    replay.capture = SSE / "with_usage.sse"
    junit = tmp_path / "out.xml"
    result = CliRunner().invoke(cli, ["smoke-stream", "--base-url", replay.base_url,
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


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:  # the JSON envelope
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
    code, envelope, stderr = run_cli("--base-url", replay.base_url)
    assert "Traceback" not in stderr
    assert code == 1, envelope
    data = envelope["data"]
    assert isinstance(data, dict)
    chunk_object = next(c for c in data["checks"] if c["name"] == "chunk_object")
    assert not chunk_object["ok"] and named in chunk_object["detail"]

    with pytest.raises(StreamError, match=named.replace("[", r"\[").replace("]", r"\]")):
        list(stream_chat([{"role": "user", "content": PROMPT}], base_url=replay.base_url,
                         model="Qwen3-14B", temperature=0.0, top_p=1.0, max_tokens=8))


def test_unparsable_base_url_is_bad_input() -> None:
    code, envelope, stderr = run_cli("--base-url", "http://[::1")
    assert "Traceback" not in stderr
    assert code == 2
    assert envelope["errors"] == [{"code": "bad_input", "field": "--base-url", "hint": "e.g. http://127.0.0.1:8000",
                                   "message": "'http://[::1' is not a URL: Invalid IPv6 URL"}]


@pytest.mark.parametrize("url", ["http://[::1", "ftp://127.0.0.1/"])
def test_library_rejects_an_unusable_base_url(url: str) -> None:
    from qwenops.errors import BadInputError
    from qwenops.stream import stream_chat

    with pytest.raises(BadInputError, match=r"is not a(n http\(s\))? URL") as raised:
        list(stream_chat([{"role": "user", "content": "x"}], base_url=url, model="m", temperature=0.0,
                         top_p=1.0, max_tokens=1))
    assert raised.value.field == "base_url"


def test_api_key_that_is_not_a_header_value_is_bad_input_and_not_printed(replay: type[Replay]) -> None:
    from qwenops.errors import BadInputError
    from qwenops.stream import stream_chat

    replay.capture = SSE / "with_usage.sse"
    with pytest.raises(BadInputError) as raised:
        list(stream_chat([{"role": "user", "content": PROMPT}], base_url=replay.base_url,
                         api_key="sk-secret\nvalue", model="Qwen3-14B", temperature=0.0, top_p=1.0, max_tokens=8))
    assert raised.value.field == "api_key" and "sk-secret" not in raised.value.one_line()

    url: str = replay.base_url
    code, envelope, stderr = run_cli("--base-url", url,
                                     env={"QWENOPS_API_KEY": "sk-secret\nvalue", "QWENOPS_BASE_URL": url})
    assert code == 2, envelope
    assert "sk-secret" not in json.dumps(envelope) + stderr and "Traceback" not in stderr


def test_transport_errors_beyond_connect_are_unreachable(replay: type[Replay]) -> None:
    """A pool with its only connection busy raises httpx.PoolTimeout: no answer can come, exit 3."""
    import httpx

    from qwenops.errors import UnreachableError
    from qwenops.stream import Timeouts, stream_chat

    replay.capture = SSE / "with_usage.sse"
    replay.hold = threading.Event()
    base_url: str = replay.base_url
    asked = {"base_url": base_url, "model": "Qwen3-14B", "temperature": 0.0, "top_p": 1.0, "max_tokens": 8}
    messages = [{"role": "user", "content": PROMPT}]
    with httpx.Client(limits=httpx.Limits(max_connections=1)) as client:
        first = stream_chat(messages, client=client, timeouts=Timeouts(connect_s=0.3), **asked)  # type: ignore[arg-type]
        waiting = threading.Thread(target=lambda: next(first, None), daemon=True)
        waiting.start()  # it holds the pool's one connection while the server stalls
        # The server has the first request: its connection is out of the pool.
        poll_until(lambda: replay.seen, "the first request reached the server", interval_s=0.01)
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
    code, envelope, _ = run_cli("--base-url", replay.base_url, "--prompt", PROMPT)
    assert code == 0, envelope
    data = envelope["data"]
    assert isinstance(data, dict)
    coherence = next(c for c in data["checks"] if c["name"] == "coherence")
    assert coherence["skipped"] and "/models/Qwen/Qwen3-14B is not qwenops' tiny model" in coherence["detail"]


@pytest.mark.parametrize(("root", "why"), [
    ("/tmp/a\x00b", "not an absolute path of printable characters"),
    ("relative/dir", "not an absolute path of printable characters"),
    ("/" + "a" * 5000, "not an absolute path of printable characters"),
])
def test_a_model_path_from_the_server_is_data_not_a_path_to_open(replay: type[Replay], tmp_path: Path, root: str,
                                                                  why: str) -> None:
    """The server's `root` named a local file for qwenops to open: a NUL in it was exit 4 (audit 4)."""
    replay.capture = sse_capture(tmp_path / "real.sse", *answer_chunks("The sea covers most of the Earth."))
    replay.root = root
    report = run_smoke(options(replay.base_url))
    coherence = next(c for c in report.checks if c.name == "coherence")
    assert report.ok and coherence.skipped and why in coherence.detail


def test_a_model_path_from_another_machine_is_not_read_here(tiny_model_root: str) -> None:
    from qwenops.smoke.run import _model_dir_here

    assert _model_dir_here("http://127.0.0.1:8000", tiny_model_root) == Path(tiny_model_root)
    assert _model_dir_here("http://[::1]:8000", tiny_model_root) == Path(tiny_model_root)
    assert "not on this machine" in str(_model_dir_here("http://10.0.0.5:8000", tiny_model_root))


def test_coherence_fails_when_the_tiny_model_answers_wrong(
    replay: type[Replay], tmp_path: Path, tiny_model_root: str
) -> None:
    replay.capture = sse_capture(tmp_path / "wrong.sse", *answer_chunks("The sea covers most of the Earth."))
    replay.root = tiny_model_root
    report = run_smoke(options(replay.base_url))
    coherence = next(c for c in report.checks if c.name == "coherence")
    assert not coherence.ok and "differs from the known" in coherence.detail


# ------------------------------------------------------------------- issue #8 and #14: scripted servers
# tests/sse_server.py: a real socket that answers each request as the test scripts it.

from tests.polling import poll_until  # noqa: E402
from tests.sse_server import Conn, Seen, forever, raw_bytes, serving, status_of, stream_of  # noqa: E402


def good_stream() -> bytes:
    events = [json.dumps(c) for c in answer_chunks("Hello there")] + ["[DONE]"]
    return "".join(f"data: {e}\n\n" for e in events).encode()


def run_text(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str, str]:
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "qwenops", "smoke-stream", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, check=False, env={**os.environ, **(env or {})})
    return done.returncode, done.stdout, done.stderr


def write_env(tmp_path: Path, **values: str) -> dict[str, str]:
    path = tmp_path / "operator.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    path.chmod(0o600)  # an env file with a key must be private (qwenops refuses it otherwise)
    return {"QWENOPS_ENV_FILE": str(path)}


def test_the_settings_key_goes_only_to_the_server_it_was_configured_for(tmp_path: Path) -> None:
    """Issue #8 A: QWENOPS_API_KEY (./.env) is for QWENOPS_BASE_URL; a --base-url elsewhere gets no key."""
    with serving(stream_of(good_stream())) as home, serving(stream_of(good_stream())) as elsewhere:
        env = write_env(tmp_path, QWENOPS_API_KEY="sk-operator-secret", QWENOPS_BASE_URL=home.base_url)
        code, _, stderr = run_cli("--base-url", elsewhere.base_url, env=env)
        assert code == 0, stderr
        assert "authorization" not in elsewhere.seen[-1].headers  # neither the stream nor /v1/models
        assert all("authorization" not in s.headers for s in elsewhere.seen)

        code, _, stderr = run_cli(env=env)  # no --base-url: the configured server, with its key
        assert code == 0, stderr
        assert home.seen[-1].headers["authorization"] == "Bearer sk-operator-secret"
        code, _, stderr = run_cli("--base-url", home.base_url + "/v1/", env=env)  # the same server, spelled longer
        assert code == 0, stderr
        assert home.seen[-1].headers["authorization"] == "Bearer sk-operator-secret"


def test_a_key_withheld_from_another_server_is_named_in_the_401_hint(tmp_path: Path) -> None:
    with serving(status_of(401, b'{"error": "Unauthorized"}')) as elsewhere:
        env = write_env(tmp_path, QWENOPS_API_KEY="sk-operator-secret", QWENOPS_BASE_URL="http://127.0.0.1:9")
        code, envelope, _ = run_cli("--base-url", elsewhere.base_url, env=env)
    assert code == 1
    error = envelope["errors"][0]
    assert error["code"] == "unauthorized"
    assert error["hint"].startswith("QWENOPS_API_KEY was not sent: it is for http://127.0.0.1:9 (QWENOPS_BASE_URL)")
    assert "sk-operator-secret" not in json.dumps(envelope)


@pytest.mark.parametrize("source", ["environment", "env file"])
@pytest.mark.parametrize(("key", "what"), [("clé", "is not ASCII"), ("sk-\udcff", "is a byte that is not UTF-8 text")])
def test_a_key_no_header_can_carry_is_exit_2_naming_api_key(tmp_path: Path, source: str, key: str, what: str) -> None:
    """Issue #14.8: was exit 4 UnicodeEncodeError. (A raw \\xff byte in an env file makes the whole file
    unreadable as UTF-8: that is settings' own exit 2, naming QWENOPS_ENV_FILE.)"""
    import os

    with serving(stream_of(good_stream())) as server:
        if source == "environment":
            env = {"QWENOPS_API_KEY": key, "QWENOPS_BASE_URL": server.base_url}
            if "\udcff" in key:  # what the environment holds for the byte 0xff
                env = {k: os.fsdecode(os.fsencode(v)) for k, v in env.items()}
        else:
            env_file = tmp_path / "k.env"
            env_file.write_text(f"QWENOPS_API_KEY={key}\nQWENOPS_BASE_URL={server.base_url}\n", encoding="utf-8",
                                errors="surrogateescape")
            env_file.chmod(0o600)
            env = {"QWENOPS_ENV_FILE": str(env_file)}
        code, stdout, stderr = run_text(env=env)
    if source == "env file" and "\udcff" in key:
        assert code == 2 and "QWENOPS_ENV_FILE: cannot read env file" in stderr
        return
    assert code == 2, stderr
    assert stderr.startswith("error: api_key: QWENOPS_API_KEY (from ") and what in stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr and stdout == ""


def keepalive_only(conn: Conn, _seen: Seen) -> None:
    conn.head(200, "text/event-stream", chunked=True)
    role = json.dumps(answer_chunks("x")[0])
    conn.chunk(f"data: {role}\n\n".encode())
    while conn.chunk(b": keepalive\n\n") and conn.sleep(0.2):
        pass


def test_keep_alive_comments_do_not_keep_a_stream_alive() -> None:
    """Issue #14.6: --timeout 2 against `: keepalive` every 0.5 s ran 300 s."""

    with serving(keepalive_only) as server:
        started = time.monotonic()
        code, envelope, stderr = run_cli("--base-url", server.base_url, "--timeout", "1")
        took = time.monotonic() - started
    assert code == 1, stderr
    error = envelope["errors"][0]
    assert error["code"] == "client_timeout" and "keep-alive comments do not count" in error["message"]
    assert took < 60  # it ended: a hang guard, not a speed goal


def test_the_deadline_ends_a_stream_that_never_finishes() -> None:

    token = f"data: {json.dumps(answer_chunks('x')[1])}\n\n".encode()
    with serving(forever([token], every_s=0.05)) as server:
        started = time.monotonic()
        code, envelope, _ = run_cli("--base-url", server.base_url, "--deadline", "1.5", "--max-tokens", "100000")
        took = time.monotonic() - started
    assert code == 1
    assert envelope["errors"][0]["message"] == "the answer did not finish within 1.5 s (deadline)"
    assert took < 60  # it ended: a hang guard, not a speed goal


def test_chunks_without_end_stop_far_past_max_tokens() -> None:
    """Issue #14.7: --max-tokens 5 against chunks forever without [DONE] took 4.5 GB in 12 s."""
    token = f"data: {json.dumps(answer_chunks('x')[1])}\n\n".encode()
    with serving(forever([token * 50])) as server:
        code, envelope, stderr = run_cli("--base-url", server.base_url, "--max-tokens", "5")
    assert code == 1, stderr
    error = envelope["errors"][0]
    assert error["code"] == "runaway_stream"
    assert "no data: [DONE], far more than max_tokens allows (at most 18); stopped reading" in error["message"]


def test_the_bytes_kept_of_one_stream_are_bounded(tmp_path: Path) -> None:
    import asyncio

    from qwenops.smoke import run as smoke
    from qwenops.stream.conformance import StreamRecord

    huge = f"data: {json.dumps(wire_chunk(choices=[{'index': 0, 'delta': {'content': 'x' * 50_000}}]))}\n\n"
    with serving(forever([huge.encode()])) as server:
        run = smoke._plan(options(server.base_url, max_stream_bytes=200_000), None)

        async def one() -> StreamRecord:
            import httpx

            async with httpx.AsyncClient() as client:
                return await smoke._record_stream(client, run, 0)

        record = asyncio.run(one())
    assert record.error is not None and record.error.code == "runaway_stream"
    assert "more than smoke-stream keeps of one stream (200,000)" in record.error.message
    assert record.data_bytes < 260_000


def test_credentials_in_the_base_url_are_masked_everywhere() -> None:
    """Issue #14.11: the password was printed in the error line."""
    from tests.integration.conftest import free_port

    code, stdout, stderr = run_text("--base-url", f"http://user:hunter2@127.0.0.1:{free_port()}/")
    assert code == 3 and "hunter2" not in stdout + stderr and "http://***@127.0.0.1:" in stderr
    with serving(stream_of(good_stream())) as server:
        url = server.base_url.replace("http://", "http://user:hunter2@")
        code, envelope, stderr = run_cli("--base-url", url)
        assert code == 0, stderr
        assert envelope["data"]["base_url"] == server.base_url.replace("http://", "http://***@")
        assert "hunter2" not in json.dumps(envelope) + stderr
        code, stdout, stderr = run_text("--base-url", url)
        assert code == 0 and "hunter2" not in stdout + stderr and "http://***@127.0.0.1" in stdout


@pytest.mark.parametrize(
    ("body", "content_type", "came"),
    [(b"<!doctype html><html><head><title>Sign in</title></head><body>" + b"<p>x</p>" * 100 + b"</body></html>",
      "text/html; charset=utf-8", "an HTML page titled 'Sign in'"),
     (b'{"id": "x", "object": "chat.completion", "choices": []}', "application/json",
      "a whole chat.completion as one JSON document")],
)
def test_a_200_that_is_not_an_event_stream_leads_with_the_content_type(body: bytes, content_type: str,
                                                                       came: str) -> None:
    """Issue #14.12: the first error line said "stream interrupted … engine may have died"."""
    with serving(status_of(200, body, content_type)) as server:
        code, stdout, stderr = run_text("--base-url", server.base_url)
    assert code == 1
    lines = stderr.splitlines()
    assert lines[0].startswith(f"error: the server answered HTTP 200 with '{content_type}', not text/event-stream: ")
    assert came in lines[0] and len(lines[0]) < 400
    assert "interrupted" not in stderr and "troubleshoot" not in stderr and "engine" not in stderr
    assert "stream 0: no stream (see" in stdout and "content_type)" in stdout  # completed points at the cause


def test_a_server_that_does_not_speak_http_is_said_briefly() -> None:
    with serving(raw_bytes(b"\x00\x00\x12\x04\x00\x00\x00\x00\x00" * 8)) as server:
        code, _, stderr = run_text("--base-url", server.base_url)
    assert code == 3, stderr
    assert stderr.startswith(f"error: base_url: {server.base_url} does not answer in HTTP: expected a status line "
                             "such as 'HTTP/1.1 200 OK', got ")
    assert "bytearray" not in stderr and stderr.count("\n") == 1 and len(stderr) < 300


def test_a_500_html_page_is_described_not_pasted() -> None:
    page = b"<html><head><title>500 Internal Server Error</title></head><body>" + b"<p>stack</p>" * 60 + b"</html>"
    with serving(status_of(500, page, "text/html")) as server:
        code, _, stderr = run_text("--base-url", server.base_url)
    assert code == 1
    assert stderr == (f"error: HTTP 500: expected a JSON error, got an HTML page titled '500 Internal Server Error' "
                      f"({len(page):,} bytes)\n")


def test_ctrl_c_with_json_prints_the_envelope_and_exits_130() -> None:
    import os
    import signal
    import subprocess
    import sys

    with serving(keepalive_only) as server:
        process = subprocess.Popen([sys.executable, "-m", "qwenops", "smoke-stream", "--json", "--base-url",
                                    server.base_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   cwd=REPO, env=os.environ.copy())
        def posted() -> bool:
            assert process.poll() is None, process.communicate()
            return any(s.method == "POST" for s in server.seen)

        poll_until(posted, "smoke-stream's request reached the server", timeout_s=120)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    envelope = json.loads(stdout)
    assert envelope["ok"] is False and envelope["data"] is None and envelope["command"] == "smoke-stream"
    assert [e["code"] for e in envelope["errors"]] == ["interrupted"]
    assert "Traceback" not in stderr


def test_the_clock_starts_when_the_request_goes_out() -> None:
    """TTFT counts from the request's head leaving on the connection (httpcore's trace), not from before
    building it or waiting for a connection: here a request hook holds every request 3 s before it is
    sent, and the first chunk still comes well inside those 3 s of sending (a loaded machine's slack is
    allowed for: the bound tells the two clocks apart, it is no speed goal)."""
    import asyncio

    import httpx

    from qwenops.smoke import run as smoke
    from qwenops.stream.conformance import parse_record
    from qwenops.stream.metrics import stream_metrics

    async def slow_to_send(_request: httpx.Request) -> None:
        await asyncio.sleep(3.0)

    async def one(base_url: str) -> float | None:
        run = smoke._plan(options(base_url), None)
        async with httpx.AsyncClient(event_hooks={"request": [slow_to_send]}) as client:
            record = await smoke._record_stream(client, run, 0)
        assert record.error is None, record.error
        return stream_metrics(parse_record(record).deltas, sent_s=record.sent_s).first_chunk_s

    with serving(stream_of(good_stream())) as server:
        first_chunk_s = asyncio.run(one(server.base_url))
    assert first_chunk_s is not None and first_chunk_s < 2.5
