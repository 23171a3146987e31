"""Ctrl-C ends a command with the documented exit code 130, and with --json still one envelope."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import REPO


@pytest.fixture
def silent_server() -> Iterator[tuple[str, threading.Event]]:
    """A server that accepts connections and never answers; the event is set once one is accepted."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            accepted.set()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    listener.close()
    for conn in held:
        conn.close()


@pytest.mark.parametrize("json_mode", [True, False])
def test_ctrl_c_exits_130_with_one_line_or_one_envelope(silent_server: tuple[str, threading.Event],
                                                        json_mode: bool) -> None:
    base_url, accepted = silent_server
    args = [sys.executable, "-m", "qwenops", "smoke-stream", "--base-url", base_url, "--timeout", "60"]
    process = subprocess.Popen([*args, *(["--json"] if json_mode else [])], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "NO_COLOR": "1"})
    try:
        assert accepted.wait(60), "smoke-stream never connected"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "Aborted" not in stderr
    if json_mode:
        doc = json.loads(stdout)
        assert doc["ok"] is False and [e["code"] for e in doc["errors"]] == ["interrupted"]
        assert stderr == ""
    else:
        assert stdout == ""
        assert stderr.startswith("error: interrupted") and stderr.count("\n") == 1
