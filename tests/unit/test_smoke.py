"""smoke-stream without a server: every check on hand-broken streams, the report contract, the
rendered summary and JUnit (golden files), and bad input on the command line."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qwenops.cli import cli
from qwenops.cli.views.smoke import smoke_summary
from qwenops.errors import StreamInterrupted
from qwenops.smoke.run import SmokeOptions, build_report, write_junit
from qwenops.stream.client import TimedEvent
from qwenops.stream.conformance import CHECK_NAMES, Expectations, StreamRecord, check_stream
from qwenops.stream.sse import parse_sse


def chunk(content: str | None = None, *, role: str | None = None, finish: str | None = None,
          id: str = "chatcmpl-1", model: str = "Qwen3-14B", **extra: Any) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return {"id": id, "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}


def usage_chunk(completion: int, *, id: str = "chatcmpl-1") -> dict[str, Any]:
    return {"id": id, "object": "chat.completion.chunk", "created": 1, "model": "Qwen3-14B", "choices": [],
            "usage": {"prompt_tokens": 13, "completion_tokens": completion, "total_tokens": 13 + completion}}


def good_events() -> list[Any]:
    return [chunk("", role="assistant"), chunk("Hello"), chunk("!"), chunk("", finish="stop"), usage_chunk(3), "[DONE]"]


def sse(events: list[Any]) -> bytes:
    return b"".join(b"data: " + (e if isinstance(e, str) else json.dumps(e)).encode() + b"\n\n" for e in events)


def record(raw: bytes, *, status: int = 200, content_type: str = "text/event-stream; charset=utf-8",
           error: Exception | None = None, start: float = 10.0, step: float = 0.25) -> StreamRecord:
    events = [TimedEvent(start + 0.5 + i * step, e) for i, e in enumerate(parse_sse(raw))]
    return StreamRecord(status_code=status, content_type=content_type, sent_s=start, events=events,
                        error=error)  # type: ignore[arg-type]


EXPECT = Expectations(model="Qwen3-14B", include_usage=True, known_answer="Hello!")


def failed(checks: list[Any]) -> dict[str, str]:
    return {c.name: c.detail for c in checks if not c.ok}


def test_a_good_stream_passes_every_check() -> None:
    checks = check_stream(record(sse(good_events())), EXPECT)
    assert [c.name for c in checks] == list(CHECK_NAMES)
    assert failed(checks) == {}


@pytest.mark.parametrize(
    ("events", "broken"),
    [
        ([chunk("", role="assistant"), "not json", chunk("Hello"), chunk("!"), chunk("", finish="stop"),
          usage_chunk(3), "[DONE]"],
         {"json_events"}),
        ([{**chunk("", role="assistant"), "object": "chat.completion"}, chunk("Hello"), chunk("!"),
          chunk("", finish="stop"), usage_chunk(3), "[DONE]"], {"chunk_object"}),
        ([chunk("", role="assistant"), chunk("Hello", id="other"), chunk("!"), chunk("", finish="stop"),
          usage_chunk(3), "[DONE]"], {"stable_id"}),
        ([chunk("", role="assistant", model="qwen"), chunk("Hello"), chunk("!"), chunk("", finish="stop"),
          usage_chunk(3), "[DONE]"], {"model_name"}),
        ([chunk("Hello"), chunk("!"), chunk("", finish="stop"), usage_chunk(3), "[DONE]"], {"first_delta_role"}),
        ([chunk("", role="assistant"), chunk("", finish="stop"), usage_chunk(1), "[DONE]"],
         {"non_empty_delta", "coherence"}),
        ([chunk("", role="assistant"), chunk("Hello", finish="length"), chunk("!", finish="stop"), usage_chunk(2),
          "[DONE]"], {"single_finish_reason"}),
        ([chunk("", role="assistant"), chunk("Hello"), chunk("!"), chunk("", finish="stop"), "[DONE]"],
         {"usage_chunk"}),
        ([chunk("", role="assistant"), chunk("Hello"), chunk("!"), chunk("", finish="stop"), "[DONE]",
          usage_chunk(3)], {"done_last"}),
        ([chunk("", role="assistant"), chunk("Hello"), chunk("!"), chunk("", finish="stop"), usage_chunk(1),
          "[DONE]"], {"token_count"}),
        ([chunk("", role="assistant"), chunk("Hello"), chunk("?"), chunk("", finish="stop"), usage_chunk(3),
          "[DONE]"], {"coherence"}),
        ([chunk("", role="assistant"), chunk("Hello"),
          {"error": {"message": "EngineCore encountered an issue.", "type": "InternalServerError", "code": 500}},
          "[DONE]"], {"single_finish_reason", "usage_chunk", "no_in_band_error", "coherence"}),
        # vLLM's end of an answer it gave up on (its engine shut down): finish_reason "abort", usage, [DONE].
        ([chunk("", role="assistant"), chunk("Hello"), chunk("!"), chunk("", finish="abort"), usage_chunk(2),
          "[DONE]"], {"single_finish_reason"}),
    ],
    ids=["not-json", "object", "id", "model", "role", "empty", "two-finish", "no-usage", "done-not-last",
         "token-count", "incoherent", "in-band-error", "aborted"],
)
def test_each_broken_stream_fails_its_own_check(events: list[Any], broken: set[str]) -> None:
    assert set(failed(check_stream(record(sse(events)), EXPECT))) == broken


def with_ids(event: dict[str, Any], ids: list[int]) -> dict[str, Any]:
    event["choices"][0]["token_ids"] = ids
    return event


@pytest.mark.parametrize(("usage", "ok"), [(5, True), (4, False), (6, False)])
def test_token_ids_make_the_token_count_exact(usage: int, ok: bool) -> None:
    # vLLM merged two steps into the "Hello" chunk: 3 token chunks carry 5 token ids.
    events = [chunk("", role="assistant"), with_ids(chunk("Hello"), [1, 2]), with_ids(chunk("!"), [3, 4]),
              with_ids(chunk("", finish="stop"), [5]), usage_chunk(usage), "[DONE]"]
    by_name = {c.name: c for c in check_stream(record(sse(events)), EXPECT)}
    assert by_name["token_count"].ok is ok, by_name["token_count"].detail


def test_without_token_ids_fewer_chunks_than_tokens_is_allowed() -> None:
    events = [chunk("", role="assistant"), chunk("Hello"), chunk("!"), chunk("", finish="stop"), usage_chunk(9),
              "[DONE]"]
    by_name = {c.name: c for c in check_stream(record(sse(events)), EXPECT)}
    assert by_name["token_count"].ok
    assert "only chunks <= tokens is checked" in by_name["token_count"].detail


def test_a_closing_chunk_is_not_counted_as_a_token_without_token_ids() -> None:
    """Issue #8 B: 10 content chunks, an empty closing chunk with finish_reason, usage 10. OpenAI and other
    OpenAI-compatible servers do not count a stop token (vLLM does): the stream is valid."""
    words = [chunk(f" w{i}") for i in range(10)]
    events = [chunk("", role="assistant"), *words, chunk("", finish="stop"), usage_chunk(10), "[DONE]"]
    expect = Expectations(model="Qwen3-14B", include_usage=True)
    by_name = {c.name: c for c in check_stream(record(sse(events)), expect)}
    assert by_name["token_count"].ok, by_name["token_count"].detail
    assert by_name["token_count"].detail.startswith("10 chunks with text for 10 tokens")
    # the one certain error without ids: more chunks with text than tokens
    events[-2] = usage_chunk(9)
    by_name = {c.name: c for c in check_stream(record(sse(events)), expect)}
    assert not by_name["token_count"].ok
    assert by_name["token_count"].detail == "10 chunks with text, more than usage.completion_tokens 9"


def test_a_cut_stream_fails_completed_and_done_last() -> None:
    raw = sse(good_events()[:3])
    cut = StreamInterrupted("stream interrupted after 2 tokens", text_so_far="", chunks=2)
    problems = failed(check_stream(record(raw, error=cut), EXPECT))
    assert problems["completed"].startswith("stream_interrupted:")
    assert {"done_last", "single_finish_reason", "usage_chunk"} <= set(problems)


def test_http_error_and_wrong_content_type() -> None:
    problems = failed(check_stream(record(b'{"error": "Unauthorized"}', status=401,
                                          content_type="application/json"), EXPECT))
    assert "http_status" in problems and "content_type" in problems
    assert problems["content_type"] == "Content-Type is 'application/json', not text/event-stream"


def test_usage_not_asked_is_skipped_not_failed() -> None:
    events = [chunk("", role="assistant"), chunk("Hello"), chunk("!"), chunk("", finish="stop"), "[DONE]"]
    checks = check_stream(record(sse(events)), Expectations(model="Qwen3-14B", include_usage=False))
    by_name = {c.name: c for c in checks}
    assert by_name["usage_chunk"].skipped and by_name["usage_chunk"].ok
    assert by_name["token_count"].skipped and by_name["coherence"].skipped


# A prompt without a known answer: coherence is skipped, whichever tiny model is installed.
OPTIONS = SmokeOptions(base_url="http://127.0.0.1:18200", model="Qwen3-14B", prompt="Greet the tests.",
                       max_tokens=64, concurrency=2, requests=2, max_ttft_s=0.6, min_tokens_per_s=1.0)


def fixed_report(*, second: StreamRecord | None = None) -> Any:
    records = [record(sse(good_events())), second or record(sse(good_events()), start=20.0, step=0.5)]
    return build_report(OPTIONS, records, wall_s=12.5)


def test_report_json_has_the_contract_keys() -> None:
    from qwenops.results import CommandResult

    data = CommandResult(command="smoke-stream", data=fixed_report()).envelope()["data"]
    assert {"ok", "checks", "ttft_s", "itl_s", "tpot_s", "e2e_s", "output_tokens", "output_tokens_per_s"} <= set(data)
    assert set(data["itl_s"]) == {"p50", "p90", "p99"}
    assert all(set(c) >= {"name", "ok", "detail"} for c in data["checks"])
    assert "api_key" not in json.dumps(data)


def test_report_numbers_follow_the_formulas() -> None:
    report = fixed_report()
    # stream 0: sent 10.0, chunks at 10.5, 10.75, 11.0, 11.25 (stop), usage 11.5
    # stream 1: sent 20.0, chunks at 20.5, 21.0, 21.5, 22.0 (stop), usage 22.5
    assert report.ttft_s == pytest.approx((0.75 + 1.0) / 2)
    assert report.e2e_s == pytest.approx((1.25 + 2.0) / 2)
    assert report.tpot_s == pytest.approx(((1.25 - 0.75) / 2 + (2.0 - 1.0) / 2) / 2)
    assert report.output_tokens == 6
    assert report.output_tokens_per_s == pytest.approx(6 / 12.5)
    assert report.itl_s.p50 == pytest.approx(0.375)


def test_thresholds_fail_the_run() -> None:
    report = fixed_report()
    by_name = {c.name: c for c in report.checks}
    assert not by_name["max_ttft"].ok  # stream 1's TTFT is 1.0 s > 0.6 s
    assert by_name["min_tokens_per_s"].ok
    assert not report.ok
    assert report.streams_ok == 2


def test_summary_view_golden(golden: Any) -> None:
    from rich.console import Console

    console = Console(width=110, record=True, no_color=True, file=open("/dev/null", "w"))  # noqa: SIM115, PTH123
    cut = StreamInterrupted("stream interrupted after 2 tokens: the server closed the connection before "
                            "data: [DONE]", text_so_far="", chunks=2)
    console.print(smoke_summary(fixed_report(second=record(sse(good_events()[:3]), start=20.0, error=cut))))
    golden("smoke/summary.txt", console.export_text())


def test_junit_golden(golden: Any, tmp_path: Path) -> None:
    path = tmp_path / "smoke.xml"
    write_junit(fixed_report(), path)
    golden("smoke/junit.xml", path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------- command line


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, ["smoke-stream", *args], catch_exceptions=False)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--concurrency", "0"], "--concurrency"),
        (["--requests", "-1"], "--requests"),
        (["--max-tokens", "x"], "--max-tokens"),
        (["--max-ttft", "0"], "--max-ttft"),
        (["--min-tokens-per-s", "-2"], "--min-tokens-per-s"),
        (["--timeout", "nan-ish"], "--timeout"),
        (["--timeout", "nan"], "--timeout"),
        (["--timeout", "inf"], "--timeout"),
        (["--max-ttft", "nan"], "--max-ttft"),
        (["--max-ttft", "inf"], "--max-ttft"),
        (["--min-tokens-per-s", "nan"], "--min-tokens-per-s"),
        (["--min-tokens-per-s", "-inf"], "--min-tokens-per-s"),
        (["--deadline", "nan"], "--deadline"),
        (["--deadline", "0"], "--deadline"),
        (["--base-url", "http://127.0.0.1:8000\n"], "--base-url"),
        (["--base-url", "http://127.0.0.1:8000/?x=1"], "--base-url"),
        (["--base-url", "ftp://host:1"], "--base-url"),
        (["--base-url", "http://127.0.0.1:99999"], "--base-url"),
        (["--prompt", "  "], "--prompt"),
        (["--profile", "no-such-profile"], "profile"),
    ],
)
@pytest.mark.parametrize("json_mode", [False, True])
def test_bad_input_is_one_line_and_exit_2(args: list[str], field: str, json_mode: bool) -> None:
    result = invoke(*args, *(["--json"] if json_mode else []))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    if json_mode:
        envelope = json.loads(result.stdout)
        assert envelope["ok"] is False and envelope["command"] == "smoke-stream"
        assert field in json.dumps(envelope["errors"])
    else:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert field in result.stderr
        assert len(lines) <= 3  # click's usage line + hint + the error, or our one line


@pytest.mark.parametrize("option", ["--timeout", "--max-ttft", "--min-tokens-per-s", "--deadline"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0"])
def test_seconds_and_rates_must_be_finite_numbers_above_0(option: str, value: str) -> None:
    """Issue #14.10: nan was a raw pydantic dump with exit 4, inf was accepted."""
    result = invoke(option, value)
    assert result.exit_code == 2
    assert re.fullmatch(rf"error: {option}: must be a finite number greater than 0, got '{re.escape(value)}' "
                        rf"\(e\.g\. {option} \d+\)\n", result.stderr), result.stderr


@pytest.mark.parametrize("where", ["flag", "environment", "env file"])
def test_a_base_url_with_a_line_break_is_bad_input(where: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue #14.9: a trailing newline was an httpx InvalidURL, exit 4."""
    url = "http://user:pw-secret@127.0.0.1:8000\n"
    args = []
    if where == "flag":
        args = ["--base-url", url]
    elif where == "environment":
        monkeypatch.setenv("QWENOPS_BASE_URL", url)
    else:
        env_file = tmp_path / "nl.env"
        env_file.write_text(f'QWENOPS_BASE_URL="{url}"\n', encoding="utf-8")
        monkeypatch.setenv("QWENOPS_ENV_FILE", str(env_file))
    result = invoke(*args)
    assert result.exit_code == 2
    field = "--base-url" if where == "flag" else "QWENOPS_BASE_URL"
    assert result.stderr == (f"error: {field}: 'http://***@127.0.0.1:8000\\n' has a line break at character 37 "
                             "(remove it: a URL is one word)\n")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends: nothing listens there


def test_unreachable_server_exits_3_with_one_line() -> None:
    port = closed_port()
    result = invoke("--base-url", f"http://127.0.0.1:{port}", "--timeout", "2")
    assert result.exit_code == 3
    assert re.fullmatch(r"error: base_url: cannot connect to http://127\.0\.0\.1:\d+: .*\n", result.stderr)
    assert result.stdout == ""


def test_unreachable_server_json() -> None:
    result = invoke("--base-url", f"http://127.0.0.1:{closed_port()}", "--json")
    assert result.exit_code == 3
    envelope = json.loads(result.stdout)
    assert envelope["errors"][0]["code"] == "unreachable"


@pytest.mark.parametrize("args", [["--json"], []])
def test_no_live_view_with_json_or_without_a_terminal(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    import qwenops.cli.views.smoke as view

    seen: list[bool] = []

    def fake_run(options: SmokeOptions, *, live: bool, junit_path: Path | None) -> Any:
        seen.append(live)
        return fixed_report()

    monkeypatch.setattr(view, "run_smoke_in_terminal", fake_run)
    invoke("--base-url", "http://127.0.0.1:1", *args)
    assert seen == [False]


# ------------------------------------------------------------------- recorded captures from the real server

SEA = "The sea is wide and deep. Waves roll in, waves roll out, and the tide keeps time for every shore."


def captured(name: str) -> bytes:
    from tests.conftest import REPO

    path = REPO / "tests" / "data" / "sse" / name
    return path.read_bytes()


@pytest.mark.parametrize(
    ("name", "include_usage", "error", "broken"),
    [
        ("normal.sse", False, None, set()),
        ("with_usage.sse", True, None, set()),
        ("inband_error.sse", False, None, {"no_in_band_error", "single_finish_reason", "coherence"}),
        ("cut_midstream.sse", False, StreamInterrupted("cut", text_so_far="", chunks=19),
         {"completed", "done_last", "single_finish_reason", "coherence"}),
    ],
)
def test_checks_on_recorded_streams(name: str, include_usage: bool, error: Exception | None, broken: set[str]) -> None:
    expect = Expectations(model="Qwen3-14B", include_usage=include_usage, known_answer=SEA)
    checks = check_stream(record(captured(name), error=error), expect)
    assert set(failed(checks)) == broken


def test_live_view_shows_running_text_and_counters() -> None:
    from rich.console import Console

    from qwenops.cli.views.smoke import LiveSmokeView
    from qwenops.stream.chunks import ChatDelta

    console = Console(width=100, record=True, file=open("/dev/null", "w"))  # noqa: SIM115, PTH123
    view = LiveSmokeView(total=2, console=console)
    view.stream_started(0)
    view.stream_started(1)
    for piece in ("The", " sea", " is"):
        view.stream_delta(0, ChatDelta(arrived_s=0.0, id="a", model="m", content=piece))
    view.stream_ended(1, ok=False)
    console.print(view._render())
    text = console.export_text()
    assert "stream 0" in text and "The sea is" in text
    assert "1/2 done, 1 failed, 3 tokens" in text


def test_smoke_stream_help_stays_light() -> None:
    import subprocess
    import sys

    probe = (
        "import sys\nfrom qwenops.cli import cli\n"
        "try:\n    cli.main(['smoke-stream', '--help'], prog_name='qwenops', standalone_mode=False)\n"
        "except SystemExit:\n    pass\n"
        "heavy = ('httpx', 'pydantic', 'rich', 'torch', 'vllm')\n"
        "print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stderr.strip().splitlines()[-1] == "[]"


def test_chunks_are_decoded_in_one_place() -> None:
    """Issue #8 C: the client, the conformance checks and smoke-stream all read chunks through
    qwenops.stream.chunks; none keeps its own copy of the decoding or of the interruption error."""
    import inspect

    import qwenops.smoke.run
    import qwenops.stream.client
    import qwenops.stream.conformance

    for module in (qwenops.smoke.run, qwenops.stream.client, qwenops.stream.conformance):
        source = inspect.getsource(module)
        for copy in ("chunk_to_delta(", "_WireChunk", "_delta_or_none", "stream interrupted after"):
            assert copy not in source, (module.__name__, copy)


def test_the_cli_defaults_are_the_cores() -> None:
    """cli/smoke.py cannot import the core (pydantic) at --help time, so its defaults are written twice."""
    from qwenops.cli.smoke import smoke_stream
    from qwenops.smoke import run as smoke

    defaults = {p.name: p.default for p in smoke_stream.params}
    assert (defaults["timeout"], defaults["deadline"]) == (smoke.DEFAULT_TIMEOUT_S, smoke.DEFAULT_DEADLINE_S)


@pytest.mark.parametrize(("option", "value"), [
    ("--concurrency", "1000000"), ("--requests", "1000000000"), ("--max-tokens", "10000000000"),
    ("--resume-attempts", "100000"),
])
def test_counts_are_bounded_one_line_naming_the_option(option: str, value: str) -> None:
    """--concurrency 1000000 opened a million streams' worth of tasks against the server (20 s of this
    process's CPU before any check); every count is bounded, refused before anything is sent."""
    result = invoke("--base-url", "http://127.0.0.1:1", option, value)
    assert result.exit_code == 2
    assert option in result.stderr and len(result.stderr.strip().splitlines()) == 1
