"""The CPU image's process chain run without Docker: its ENTRYPOINT and HEALTHCHECK, read from the
rendered docker/Dockerfile.cpu, on the real vLLM CPU engine.

`docker stop` sends SIGTERM to PID 1 (dumb-init); it must reach qwenops, which drains vLLM and
ends its process group, so nothing is left when PID 1 exits. The health check must fail while vLLM
loads and pass once it serves. (The image build itself needs a Docker daemon and the base images,
which this machine has not: docs/deploy.md.)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from qwenops.render.run import render_deploy
from tests.integration.conftest import free_port

# A hang guard: vLLM on a loaded 2-core machine takes minutes to be ready.
READY_TIMEOUT_S = float(os.environ.get("QWENOPS_TEST_READY_TIMEOUT", "800"))


def image_command(dockerfile: str, instruction: str) -> list[str]:
    """An exec-form instruction's argv (ENTRYPOINT, or HEALTHCHECK's CMD)."""
    if instruction == "HEALTHCHECK":
        found = re.search(r"^HEALTHCHECK .*\\\n\s+CMD (\[.*\])$", dockerfile, re.MULTILINE)
    else:
        found = re.search(rf"^{instruction} (\[.*\])$", dockerfile, re.MULTILINE)
    assert found, instruction
    argv: list[str] = json.loads(found.group(1))
    return argv


def image_env(dockerfile: str) -> dict[str, str]:
    found = re.search(r"^ENV (HOME=.*?)(?<!\\)\n", dockerfile, re.MULTILINE | re.DOTALL)
    assert found
    return dict(word.split("=", 1) for word in found.group(1).replace("\\\n", " ").split())


@pytest.mark.engine
@pytest.mark.slow
def test_entrypoint_drains_on_sigterm_and_health_check_follows_readiness(tmp_path: Path,
                                                                         tiny_model_dir: Path) -> None:
    dockerfile = render_deploy("dockerfile", "cpu-tiny").text
    here = {"dumb-init": str(Path(sys.executable).parent / "dumb-init"), "python3": sys.executable}
    entrypoint = [here.get(word, word) for word in image_command(dockerfile, "ENTRYPOINT")]
    assert entrypoint[2] == "qwenops"
    entrypoint[2:3] = [sys.executable, "-m", "qwenops"]  # this checkout's qwenops
    port = free_port()
    health = [here.get(word, word).replace("127.0.0.1:8000/", f"127.0.0.1:{port}/")
              for word in image_command(dockerfile, "HEALTHCHECK")]
    state = tmp_path / "state"
    (state / "models").mkdir(parents=True)
    (state / "models" / "qwen3-tiny").symlink_to(tiny_model_dir)  # built in the image, here cached
    env = {**os.environ, **image_env(dockerfile), "QWENOPS_STATE_DIR": str(state), "HOME": str(state),
           "QWENOPS_PORT": str(port)}
    for cache in ("HF_HOME", "XDG_CACHE_HOME", "VLLM_CACHE_ROOT", "TRITON_CACHE_DIR"):
        env[cache] = str(tmp_path / "cache" / cache.lower())

    pid1 = subprocess.Popen(entrypoint, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    seen: set[int] = set()
    try:
        assert subprocess.run(health, capture_output=True, check=False).returncode != 0  # loading: not healthy
        deadline = time.monotonic() + READY_TIMEOUT_S
        while subprocess.run(health, capture_output=True, check=False).returncode != 0:
            assert pid1.poll() is None, pid1.communicate()
            assert time.monotonic() < deadline, "not healthy in time"
            seen |= {p.pid for p in psutil.Process(pid1.pid).children(recursive=True)}
            time.sleep(2)
        seen |= {p.pid for p in psutil.Process(pid1.pid).children(recursive=True)}
        assert len(seen) >= 2  # qwenops and at least the vLLM API server

        pid1.send_signal(signal.SIGTERM)  # what `docker stop` does
        out, err = pid1.communicate(timeout=60)
        assert pid1.returncode == 0, err
        assert "STOPPED: SIGTERM; server drained" in out
        left = [pid for pid in seen if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        assert left == []
    finally:
        if pid1.poll() is None:
            os.killpg(pid1.pid, signal.SIGKILL)
            pid1.wait(10)
        for pid in seen:  # never leave an engine behind, even on failure
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
