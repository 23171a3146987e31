"""doctor against real processes: a port held by a live server, and the real tiny model served by vLLM."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import free_port
from tests.polling import poll_until


def doctor(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "qwenops", "doctor", *args, "--json"], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})}, check=False)
    assert "Traceback" not in done.stderr
    return done.returncode, json.loads(done.stdout)


def checks(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["data"]["checks"]}


def test_a_port_held_by_a_live_server_is_a_failure_naming_it(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        def answers() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
            return False

        poll_until(answers, "the port-holding http.server answers", interval_s=0.1)
        code, doc = doctor("--profile", "cpu-tiny", env={"QWENOPS_PORT": str(port)})
        result = checks(doc)["port"]
        assert code == 1 and result["status"] == "fail"
        assert f"127.0.0.1:{port} is taken by" in result["finding"]
        if f"pid {server.pid}" not in result["finding"]:  # psutil may not see the pid without privileges
            assert "a process this user cannot see" in result["finding"]
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
    _, after = doctor("--profile", "cpu-tiny", env={"QWENOPS_PORT": str(port)})
    assert checks(after)["port"]["status"] == "pass"


@pytest.mark.engine
def test_doctor_beside_the_real_vllm_server(vllm_server: Any) -> None:
    """The tiny model vLLM is serving passes the model check; the port vLLM holds is reported as taken."""
    env = {"QWENOPS_MODEL": str(vllm_server.model_dir), "QWENOPS_PORT": str(vllm_server.port)}
    code, doc = doctor("--profile", "cpu-tiny", env=env)
    found = checks(doc)
    assert found["model"]["status"] == "pass", found["model"]
    assert "Qwen3ForCausalLM" in found["model"]["finding"]
    assert found["port"]["status"] == "fail"
    assert found["gpu"]["status"] == "skip"  # the CPU engine needs no GPU
    assert found["engine"]["status"] == "pass"
    assert code == 1
