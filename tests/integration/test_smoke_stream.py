"""`qwenops smoke-stream` against the real vLLM CPU server (the tiny Qwen3 model)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import REPO
from tests.integration.conftest import (
    RunningServer,
    free_port,
)
from tests.polling import poll_until

KNOWN_PROMPT = "Tell me about the sea."


def smoke(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> tuple[int, dict[str, Any], str]:
    """Run the CLI as a user would (a real process), return (exit code, JSON envelope, stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "qwenops", "smoke-stream", "--json", *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False, env={**os.environ, **(env or {})},
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def checks(envelope: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in envelope["data"]["checks"]}


@pytest.mark.engine
def test_smoke_passes_with_a_known_prompt(vllm_server: RunningServer) -> None:
    code, envelope, _ = smoke("--base-url", vllm_server.base_url, "--prompt", KNOWN_PROMPT)
    assert code == 0, json.dumps(envelope["data"]["checks"], indent=1)
    data = envelope["data"]
    assert data["ok"] is True and envelope["ok"] is True
    by_name = checks(envelope)
    assert not by_name["coherence"]["skipped"]  # the greedy answer was compared, and matched
    assert by_name["token_count"]["ok"] and not by_name["token_count"]["skipped"]
    assert 0 < data["ttft_s"] <= data["e2e_s"]
    assert data["tpot_s"] > 0 and data["output_tokens"] > 1
    assert set(data["itl_s"]) == {"p50", "p90", "p99"}


@pytest.mark.engine
def test_eight_concurrent_streams_all_pass(vllm_server: RunningServer, tmp_path: Any) -> None:
    junit = tmp_path / "smoke.xml"
    code, envelope, _ = smoke("--base-url", vllm_server.base_url, "--prompt", KNOWN_PROMPT,
                              "--concurrency", "8", "--junit", str(junit))
    assert code == 0, json.dumps(envelope["data"]["checks"], indent=1)
    assert envelope["data"]["streams_ok"] == 8
    ids = {c["detail"] for s in envelope["data"]["streams"] for c in s["checks"] if c["name"] == "stable_id"}
    assert len(ids) == 8  # each stream has its own id
    assert 'failures="0"' in junit.read_text()


@pytest.mark.engine
def test_wrong_model_name_is_its_own_failure(vllm_server: RunningServer) -> None:
    code, envelope, _ = smoke("--base-url", vllm_server.base_url, "--model", "Qwen3-15B")
    assert code == 1
    assert [e["code"] for e in envelope["errors"]] == ["model_not_found"]
    assert "Qwen3-15B" in checks(envelope)["http_status"]["detail"]


def test_wrong_port_is_unreachable() -> None:
    code, envelope, _ = smoke("--base-url", f"http://127.0.0.1:{free_port()}")
    assert code == 3
    assert envelope["errors"][0]["code"] == "unreachable"


@pytest.mark.engine
def test_threshold_failure_exits_1(vllm_server: RunningServer) -> None:
    code, envelope, _ = smoke("--base-url", vllm_server.base_url, "--min-tokens-per-s", "1000000")
    assert code == 1
    assert checks(envelope)["min_tokens_per_s"]["ok"] is False
    assert all(s["ok"] for s in envelope["data"]["streams"])  # the streams were fine; the threshold was not


def wait_for_health(server: RunningServer) -> None:
    """The shared fixture waits on /v1/models, which a server with an API key answers 401; /health is open."""
    import httpx

    def healthy() -> bool:
        assert server.process.poll() is None, server.log_path.read_text(errors="replace")[-3000:]
        try:
            return httpx.get(server.base_url + "/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    poll_until(healthy, "vLLM with an API key answers /health", timeout_s=600, interval_s=0.5)


@pytest.mark.engine
def test_server_with_api_key_401_then_pass_with_the_key(
    disposable_server: Callable[[], RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tests.integration.conftest as shared

    monkeypatch.setenv("VLLM_API_KEY", "sk-smoke-test")  # vLLM's --api-key, read from the environment
    monkeypatch.setattr(shared, "_wait_ready", wait_for_health)
    server = disposable_server()
    code, envelope, _ = smoke("--base-url", server.base_url)
    assert code == 1
    assert [e["code"] for e in envelope["errors"]] == ["unauthorized"]
    assert "QWENOPS_API_KEY" in envelope["errors"][0]["hint"]
    # QWENOPS_API_KEY goes only to the server it is configured for (QWENOPS_BASE_URL): not to a --base-url
    code, envelope, _ = smoke("--base-url", server.base_url, env={"QWENOPS_API_KEY": "sk-smoke-test"})
    assert code == 1
    assert envelope["errors"][0]["hint"].startswith("QWENOPS_API_KEY was not sent: it is for http://127.0.0.1:")
    code, envelope, _ = smoke(env={"QWENOPS_API_KEY": "sk-smoke-test", "QWENOPS_BASE_URL": server.base_url})
    assert code == 0, envelope
    assert "sk-smoke-test" not in json.dumps(envelope)


class HoldingProxy:
    """A TCP proxy in front of the server that passes each answer's first `allow` bytes, then holds the
    rest back: every stream is mid-answer at the client, however fast the tiny model finishes. When the
    server dies, the proxy closes the client's side as the server's would have been closed."""

    def __init__(self, upstream_port: int, allow: int) -> None:
        import threading

        self.allow = allow
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.holding = threading.Semaphore(0)  # released once per connection that reached `allow`
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:  # the server is gone: so is this connection
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, self.allow), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, allow: int | None) -> None:
        passed = 0
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if allow is not None and passed + len(data) >= allow:
                    sink.sendall(data[: max(0, allow - passed)])
                    self.holding.release()
                    while source.recv(65536):  # hold the rest back until the server is gone
                        pass
                    break
                sink.sendall(data)
                passed += len(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()


@pytest.mark.engine
def test_killing_the_server_mid_stream_reports_stream_interrupted(
    disposable_server: Callable[..., RunningServer],
) -> None:
    server = disposable_server()
    # Each answer is ~60 KB (480 chunks with token ids); the client gets the first 8 KB of each, then the
    # server is killed. (A fixed sleep after the requests arrived raced the tiny model, which can finish all
    # eight answers in under a second.)
    proxy = HoldingProxy(server.port, allow=8192)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "qwenops", "smoke-stream", "--json", "--base-url", proxy.base_url,
             "--ignore-eos", "--max-tokens", "480", "--concurrency", "4", "--requests", "8"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        )
        for _ in range(4):
            assert proxy.holding.acquire(timeout=60), "the streams never got going"
        os.killpg(server.pgid, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        proxy.close()
    assert "Traceback" not in stderr
    assert process.returncode == 1, stderr
    envelope = json.loads(stdout)
    interrupted = [s for s in envelope["data"]["streams"] if s["error"] and s["error"]["code"] == "stream_interrupted"]
    assert interrupted, [s["error"] for s in envelope["data"]["streams"] if s["error"]]
    assert any(s["partial_tokens"] > 0 for s in interrupted)
    assert checks(envelope)["completed"]["ok"] is False
    assert "stream_interrupted" in checks(envelope)["completed"]["detail"] or "unreachable" in checks(envelope)[
        "completed"]["detail"]
