"""`qwenops status` and `qwenops troubleshoot --base-url` against the real vLLM CPU server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import HTTPServer, SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO
from tests.integration.conftest import RunningServer


def qwenops(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, dict[str, Any], str]:
    done = subprocess.run([sys.executable, "-m", "qwenops", *args, "--json"], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, check=False, env={**os.environ, **(env or {})})
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def chat(server: RunningServer, max_tokens: int = 16) -> None:
    answer = httpx.post(server.base_url + "/v1/chat/completions", timeout=120, json={
        "model": server.model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "Say hello."}]})
    assert answer.status_code == 200, answer.text


@pytest.mark.engine
def test_status_of_a_live_server(vllm_server: RunningServer) -> None:
    chat(vllm_server)  # the server has answered at least once, whatever ran before
    code, doc, _ = qwenops("status", "--base-url", vllm_server.base_url, "--interval", "0.5")
    data = doc["data"]
    assert code == 0 and data["healthy"] is True
    assert data["models"] == [vllm_server.model]
    assert data["uptime_s"] > 0 and 0 <= data["kv_cache_usage"] <= 1
    assert data["requests_running"] >= 0 and data["preemptions_total"] >= 0


@pytest.mark.engine
def test_latency_over_an_interval_comes_from_requests_in_it(vllm_server: RunningServer) -> None:
    """Two real scrapes around real requests: the interval's TTFT and token rate are those requests'."""
    from qwenops.status.run import status_between
    from qwenops.vllmmetrics import parse

    before = parse(httpx.get(vllm_server.base_url + "/metrics", timeout=10).text)
    for _ in range(3):
        chat(vllm_server, max_tokens=24)
    after = parse(httpx.get(vllm_server.base_url + "/metrics", timeout=10).text)
    status = status_between(vllm_server.base_url, before, after, healthy=True, models=(vllm_server.model,))
    assert status.requests_finished == 3
    assert status.generation_tokens_per_s is not None and status.generation_tokens_per_s > 0
    assert status.ttft_p50_s is not None and 0 < status.ttft_p50_s <= status.ttft_p99_s  # type: ignore[operator]
    idle = status_between(vllm_server.base_url, after, after, healthy=True, models=())
    assert idle.ttft_p50_s is None and idle.requests_finished == 0  # nothing happened: nothing is made up


@pytest.mark.engine
def test_troubleshoot_a_healthy_live_server(vllm_server: RunningServer) -> None:
    code, doc, _ = qwenops("troubleshoot", "--base-url", vllm_server.base_url, "--no-host")
    assert code == 0, doc
    assert [f for f in doc["data"]["findings"] if f["severity"] == "error"] == []
    assert doc["data"]["sources"][0]["name"] == f"server {vllm_server.base_url}"


@pytest.mark.engine
def test_troubleshoot_without_a_source_reads_the_configured_server_and_this_host(vllm_server: RunningServer) -> None:
    code, doc, _ = qwenops("troubleshoot", env={"QWENOPS_BASE_URL": vllm_server.base_url})
    names = [s["name"] for s in doc["data"]["sources"]]
    assert names == [f"server {vllm_server.base_url}", "profile cpu-tiny", "this host"]
    assert code == 0, doc  # host findings are warnings at most; the healthy server gives no error
    assert all(f["category"] != "engine_dead" for f in doc["data"]["findings"])


@pytest.fixture
def not_vllm(tmp_path: Path) -> Iterator[str]:
    """A web server that is not vLLM: /health and /metrics are 404."""
    handler = type("Quiet", (SimpleHTTPRequestHandler,), {"log_message": lambda *_: None})
    server = HTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("command", ["troubleshoot", "status"])
def test_a_url_that_is_not_a_vllm_server_is_bad_input(command: str, not_vllm: str) -> None:
    code, doc, _ = qwenops(command, "--base-url", not_vllm)
    assert code == 2
    assert doc["errors"][0]["field"] == "--base-url" and "not a vLLM server" in doc["errors"][0]["message"]


@pytest.mark.parametrize("command", ["troubleshoot", "status"])
def test_nothing_listening_is_unreachable(command: str) -> None:
    from tests.integration.conftest import free_port

    code, doc, _ = qwenops(command, "--base-url", f"http://127.0.0.1:{free_port()}")
    assert code == 3 and doc["errors"][0]["code"] == "unreachable"


@pytest.mark.engine
def test_probes_of_a_healthy_server(vllm_server: RunningServer) -> None:
    code, doc, _ = qwenops("troubleshoot", "--probe", "--base-url", vllm_server.base_url, "-p", "cpu-tiny",
                           "--no-host", timeout=600)
    assert code == 0, doc
    found = {f["category"]: f for f in doc["data"]["findings"]}
    assert "TTFT" in found["latency"]["evidence"][0]["quote"]
    # cpu-tiny's 8 sequences of 64 tokens fit its 1 GiB cache many times over: max_num_seqs binds first.
    assert found["memory_headroom"]["evidence"][0]["quote"].startswith("concurrency 8 (max_num_seqs): no preemption")
    assert doc["data"]["sources"][-1]["name"] == "probes"


@pytest.mark.engine
def test_a_client_timeout_shorter_than_an_answer_is_found(vllm_server: RunningServer) -> None:
    code, doc, _ = qwenops("troubleshoot", "--probe", "--base-url", vllm_server.base_url, "-p", "cpu-tiny",
                           "--no-host", "--client-timeout", "0.001", timeout=600)
    first = doc["data"]["findings"][0]
    assert first["category"] == "client_timeout" and code in (0, 1)
    assert first["evidence"][0]["source"] == "probe"


def test_probes_need_a_live_server(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("INFO: hello\n")
    code, doc, _ = qwenops("troubleshoot", "--probe", "--log", str(log))
    assert code == 2 and doc["errors"][0]["field"] == "--probe"
