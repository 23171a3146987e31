"""smoke-stream end to end over a real socket, without the engine: a stdlib HTTP server replays the
recorded vLLM captures (tests/data/sse/README.md), so the whole path (asyncio, httpx, parser, checks,
metrics, CLI, exit codes) runs in every CI, not only where the vLLM CPU engine is installed."""

from __future__ import annotations

import json
import threading
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
    """Answers every POST with one capture as recorded, or with the status and body it is told."""

    capture: Path | None = None
    status = 200
    body = b""
    seen: list[dict[str, object]] = []  # noqa: RUF012 -- one server per test; the test reads it back

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


def test_recorded_stream_with_usage_passes(replay: type[Replay]) -> None:
    replay.capture = SSE / "with_usage.sse"
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
