"""`qwenops smoke-stream --resume` against the scripted vLLM of test_stream_resume.py (a real local
socket; chat completions with token ids, plain completions from token ids, /health, /v1/models): a
stream cut mid-answer is continued by the stream library, the stitched stream passes every check (the
greedy answer included), and the report says where each stream was resumed, or why it was not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qwenops.cli import cli
from qwenops.stream.chunks import ChatDelta, Resumed
from qwenops.stream.metrics import stream_metrics
from tests.sse_server import Conn
from tests.unit.test_stream_resume import PROMPT, FakeVLLM, fake, piece

MAX_TOKENS = 24


class TinyVLLM(FakeVLLM):
    """The scripted vLLM, its /v1/models naming a model path that holds the tiny model's stamp, whose
    known answer to the prompt is the uncut scripted answer: `coherence` then compares the stitched text."""

    root: str = ""

    def get(self, conn: Conn, path: str) -> None:
        if path != "/v1/models":
            super().get(conn, path)
            return
        data = json.dumps({"data": [{"id": "Qwen3-14B", "root": self.root}]}).encode()
        conn.head(200, "application/json", length=len(data))
        conn.send(data)


def uncut_text() -> str:
    return "".join(piece(token) for token in FakeVLLM().tokens(list(PROMPT), MAX_TOKENS))


@pytest.fixture
def tiny_root(tmp_path: Path) -> str:
    from qwenops import tinymodel

    root = tmp_path / "qwen3-tiny"
    root.mkdir()
    stamp = {"key": "test", "seed": 0, "parameters": 1, "known_answers": {"Say hello.": uncut_text()}}
    (root / tinymodel._STAMP_NAME).write_text(json.dumps(stamp), encoding="utf-8")
    return str(root)


def smoke(server: FakeVLLM, *args: str) -> tuple[int, str]:
    with fake(server) as base_url:
        result = CliRunner().invoke(cli, ["smoke-stream", "--base-url", base_url, "--prompt", "Say hello.",
                                          "--max-tokens", str(MAX_TOKENS), *args])
    return result.exit_code, result.output


def envelope(output: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(output)
    return data


@pytest.fixture
def server(tiny_root: str) -> Iterator[TinyVLLM]:
    vllm = TinyVLLM(chat=["cut:10"])
    vllm.root = tiny_root
    yield vllm


def test_a_cut_stream_is_resumed_and_the_stitched_stream_passes_every_check(server: TinyVLLM) -> None:
    code, output = smoke(server, "--resume", "--json")
    assert code == 0, output
    data = envelope(output)["data"]
    checks = {c["name"]: c for c in data["checks"]}
    assert all(c["ok"] for c in checks.values()), [c for c in checks.values() if not c["ok"]]
    # the greedy answer, stitched across the cut, is the known (uncut) text, token for token
    assert not checks["coherence"]["skipped"] and data["streams"][0]["text"] == uncut_text()
    assert checks["token_count"]["detail"] == f"{MAX_TOKENS} token ids = usage.completion_tokens"
    assert checks["single_finish_reason"]["ok"] and checks["usage_chunk"]["ok"] and checks["stable_id"]["ok"]
    assert checks["chunk_object"]["skipped"]  # the continuation's chunks are text_completion: said, not faked
    stream = data["streams"][0]
    assert [(r["after_tokens"], r["attempt"]) for r in stream["resumed"]] == [(10, 1)]
    assert stream["resumed"][0]["gap_ms"] >= 0 and stream["not_resumed"] is None
    assert data["resume"] is True and data["streams_resumed"] == 1
    assert stream["metrics"]["output_tokens"] == MAX_TOKENS
    assert [path for path, _ in server.bodies] == ["/v1/chat/completions", "/v1/completions"]
    # the keys smoke-stream always had are still there
    assert {"ok", "checks", "streams", "ttft_s", "itl_s", "output_tokens", "wall_s"} <= set(data)
    assert {"index", "ok", "checks", "metrics", "text", "error", "partial_tokens"} <= set(stream)


def test_the_text_report_shows_each_resumption(server: TinyVLLM) -> None:
    server.chat = ["cut:10", "ok"]
    code, output = smoke(server, "--resume", "--requests", "2")
    assert code == 0, output
    assert "smoke-stream PASS: 2/2 streams ok" in output
    assert "resume: 1/2 streams resumed, 1 not cut" in output
    row = next(line for line in output.splitlines() if "cut, then continued from its token ids" in line)
    assert row.split()[:2] == ["0", "10"] and row.split()[4] == "1"  # stream, after tokens, gap (n ms), attempt


def test_a_stream_that_could_not_be_resumed_says_why(server: TinyVLLM) -> None:
    server.health = [503]  # the server never becomes ready again
    code, output = smoke(server, "--resume", "--resume-wait", "0.5", "--json")
    assert code == 1
    data = envelope(output)["data"]
    stream = data["streams"][0]
    assert stream["resumed"] == [] and stream["error"]["code"] == "stream_interrupted"
    assert stream["not_resumed"].startswith("the server was not ready again within")
    assert stream["partial_tokens"] == 10 and data["streams_resumed"] == 0
    completed = next(c for c in data["checks"] if c["name"] == "completed")
    assert not completed["ok"] and "not resumed: the server was not ready again" in completed["detail"]
    code, output = smoke(server, "--resume", "--resume-wait", "0.5")
    assert code == 1 and "not resumed: the server was not ready again" in " ".join(output.split())


def test_without_resume_the_same_cut_fails_as_before(server: TinyVLLM) -> None:
    code, output = smoke(server, "--json")
    assert code == 1
    stream = envelope(output)["data"]["streams"][0]
    assert stream["error"]["code"] == "stream_interrupted" and stream["partial_tokens"] == 10
    assert stream["resumed"] == [] and stream["not_resumed"] is None
    assert [path for path, _ in server.bodies] == ["/v1/chat/completions"]


@pytest.mark.parametrize(("args", "flag"), [
    (["--resume", "--resume-wait", "nan"], "--resume-wait"),
    (["--resume", "--resume-wait", "0"], "--resume-wait"),
    (["--resume", "--resume-attempts", "0"], "--resume-attempts"),
    (["--resume-wait", "5"], "--resume-wait"),
    (["--resume-attempts", "2"], "--resume-attempts"),
])
def test_resume_flags_are_validated_in_one_line_naming_the_flag(args: list[str], flag: str) -> None:
    result = CliRunner().invoke(cli, ["smoke-stream", "--base-url", "http://127.0.0.1:9", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and flag in lines[0], result.output
    assert "No such option" not in lines[0]


def test_the_resume_gap_is_not_an_inter_token_latency() -> None:
    def token(at: float, ids: tuple[int, ...] = (5,)) -> ChatDelta:
        return ChatDelta(at, "chatcmpl-1", "Qwen3-14B", content="w ", token_ids=ids)

    deltas = [
        ChatDelta(0.05, "chatcmpl-1", "Qwen3-14B", role="assistant"),
        token(0.1), token(0.2),
        ChatDelta(5.2, "chatcmpl-1", "Qwen3-14B", has_choice=False, resumed=Resumed(2, 4900.0, 1)),
        token(5.2), token(5.3),
    ]
    metrics = stream_metrics(deltas, sent_s=0.0)
    assert metrics.itl_s == pytest.approx((0.1, 0.1))  # the 5 s across the cut is the resume's gap
    assert metrics.e2e_s == pytest.approx(5.3) and metrics.output_tokens == 4  # the caller did wait
    assert metrics.first_chunk_s == pytest.approx(0.05)
