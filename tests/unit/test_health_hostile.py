"""The supervisor's own probes against whatever answers on the server's port (the port can be taken by another
process): every body bounded and read as sent, every exchange within the probe's time, the detail line short.
A scripted server on a real socket."""

from __future__ import annotations

import gzip
import json
import time

from qwenops.supervisor.health import HealthChecker, Probe, Progress
from tests.sse_server import Conn, Seen, serving

BOMB = gzip.compress(gzip.compress(bytes(256 << 20), 9), 9)  # 256 MiB of zeros, a few KiB on the wire


def bomb(conn: Conn, seen: Seen) -> None:
    conn.send(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip, gzip\r\n"
              + f"content-length: {len(BOMB)}\r\nconnection: close\r\n\r\n".encode() + BOMB)


def timed_probe(base_url: str, timeout_s: float) -> tuple[Probe, Progress | None]:
    """One probe and one progress read, each ended by the checker's own time (well within 30 s), not the server's."""
    checker = HealthChecker(base_url, "m", timeout_s=timeout_s)
    try:
        started = time.monotonic()
        probe = checker.probe()
        progress = checker.progress()
        assert time.monotonic() - started < 30
        return probe, progress
    finally:
        checker.close()


def test_a_compressed_answer_is_not_inflated_and_the_key_goes_only_to_the_port() -> None:
    with serving(bomb, answer_gets=True) as server:
        checker = HealthChecker(server.base_url, "m", api_key="sk-probe", timeout_s=2)
        try:
            probe = checker.probe()
            assert (probe.healthy, probe.ready) == (True, False)
            assert probe.detail == "/v1/models answered something that is not a model list"
            assert checker.progress() is None
        finally:
            checker.close()
    assert {s.path for s in server.seen} == {"/health", "/v1/models", "/metrics"}
    assert {s.headers["accept-encoding"] for s in server.seen} == {"identity"}
    # The key goes only where vLLM checks it: whatever holds the port while vLLM is down gets none from /health or
    # /metrics (audit 8).
    assert {s.path: s.headers.get("authorization") for s in server.seen} == {
        "/health": None, "/metrics": None, "/v1/models": "Bearer sk-probe"}


def test_a_body_that_drips_ends_at_the_probes_time() -> None:
    def drip(conn: Conn, seen: Seen) -> None:
        if seen.path == "/health":
            conn.head(200, "application/json", length=2)
            conn.send(b"{}")
            return
        conn.head(200, "application/json", length=1_000_000)
        while conn.send(b" ") and conn.sleep(0.1):
            pass

    with serving(drip, answer_gets=True) as server:
        probe, progress = timed_probe(server.base_url, timeout_s=1)  # the server would take 100 s
    assert (probe.healthy, probe.ready, probe.detail) == (True, False, "/v1/models: timed out")
    assert progress is None


def test_a_head_that_drips_ends_at_the_probes_time() -> None:
    """httpx bounds each read, not the head: a header byte every 0.1 s would hold the supervisor's loop for
    ever. The whole exchange ends at three read timeouts (a timer shuts the probe's socket)."""
    def drip(conn: Conn, _seen: Seen) -> None:
        conn.send(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
        while conn.send(b"x") and conn.sleep(0.1):
            pass

    with serving(drip, answer_gets=True) as server:
        probe, progress = timed_probe(server.base_url, timeout_s=0.5)  # 1.5 s, not never
    assert (probe.healthy, probe.ready, probe.detail) == (False, False, "timed out")
    assert progress is None


def test_a_long_model_list_is_named_in_a_short_line() -> None:
    listing = json.dumps({"data": [{"id": f"model-{i}\x1b[31m"} for i in range(20_000)]}).encode()

    def models(conn: Conn, seen: Seen) -> None:
        conn.head(200, "application/json", length=len(listing))
        conn.send(listing)

    with serving(models, answer_gets=True) as server:
        checker = HealthChecker(server.base_url, "m", timeout_s=5)
        try:
            detail = checker.probe().detail
        finally:
            checker.close()
    assert detail.startswith("model 'm' not listed (server has ['model-0")
    assert detail.endswith(" and 19984 more)") and len(detail) < 2000 and "\x1b" not in detail


def test_the_key_goes_to_no_listener_but_the_server_serve_started() -> None:
    """A local user who takes the port while vLLM is down got the key from serve's /v1/models probe (audit 8). The
    probe asks whether the listener is serve's own (its process tree) before any keyed request."""
    with serving(bomb, answer_gets=True) as server:
        checker = HealthChecker(server.base_url, "m", api_key="sk-probe", timeout_s=2, ours=lambda: False)
        try:
            probe = checker.probe()
            assert (probe.healthy, probe.ready) == (True, False)
            assert "not from the server serve started" in probe.detail and "sk-probe" not in probe.detail
            assert checker.generates(2) is False
        finally:
            checker.close()
    assert {s.path for s in server.seen} == {"/health"}
    assert all("authorization" not in s.headers for s in server.seen)


def test_a_process_tree_holds_the_port_or_it_does_not() -> None:
    import os
    import signal
    import socket
    import subprocess
    import sys

    from qwenops.supervisor.process import tree_listens

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # A parent whose child listens (as the guard's vLLM does), and a process that holds nothing.
    listener = subprocess.Popen([sys.executable, "-c", (
        "import socket, subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', 'import socket, time; s = socket.socket(); "
        f"s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((\"127.0.0.1\", {port})); s.listen(); "
        "print(1, flush=True); time.sleep(60)'])\n"
        "child.wait()\n")], stdout=subprocess.PIPE, text=True, start_new_session=True)
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        assert listener.stdout is not None and listener.stdout.readline().strip() == "1"
        assert tree_listens(listener.pid, port) is True
        assert tree_listens(idle.pid, port) is False
        assert tree_listens(2**22 + 12345, port) is False  # no such process
        assert tree_listens(listener.pid, port, "127.0.0.1") is True
        assert tree_listens(listener.pid, port, "localhost") is True  # nobody else on the port
        # Audit 9, F5: another listener on the same port, another address: a probe to that address reaches it.
        with socket.socket(socket.AF_INET6) as beside:
            beside.bind(("::1", port))
            beside.listen()
            assert tree_listens(listener.pid, port, "::1") is False
            assert tree_listens(listener.pid, port, "[::1]") is False
            assert tree_listens(listener.pid, port, "127.0.0.1") is True  # it does not take 127.0.0.1's connections
        assert tree_listens(listener.pid, port, "no-such-host.invalid") is False  # unresolved: nothing keyed
    finally:
        for process in (listener, idle):
            os.killpg(process.pid, signal.SIGKILL)  # the listening grandchild too
            process.wait()


def test_which_listener_takes_a_connection() -> None:
    from qwenops.supervisor.process import _reaches

    assert _reaches("127.0.0.1", "127.0.0.1")
    assert _reaches("0.0.0.0", "127.0.0.1")
    assert _reaches("::", "127.0.0.1")  # a dual-stack wildcard takes IPv4 too
    assert _reaches("::", "::1")
    assert _reaches("::ffff:127.0.0.1", "127.0.0.1")
    assert not _reaches("0.0.0.0", "::1")
    assert not _reaches("::1", "127.0.0.1")
    assert not _reaches("127.0.0.2", "127.0.0.1")
