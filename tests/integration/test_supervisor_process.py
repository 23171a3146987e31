"""The supervisor on real processes, with a small fake vLLM (tests/integration/fake_vllm.py).

Everything here is real except the engine: process groups, signals, orphans, HTTP probes, the
sd_notify datagram socket, the rotated log file. Each test takes a few seconds at most.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from qwenops.supervisor.health import HealthChecker
from qwenops.supervisor.notify import Notifier
from qwenops.supervisor.options import SupervisorOptions
from qwenops.supervisor.process import LogFile, ServerProcess, spawn
from qwenops.supervisor.runner import Outcome, Supervisor
from qwenops.supervisor.states import Event, State
from tests.integration.conftest import free_port_in
from tests.polling import poll_until

FAKE = Path(__file__).with_name("fake_vllm.py")
PORTS = range(18310, 18349)  # this module's port range; the real engine's serve starts use 18350-18399


def free_port() -> int:
    return free_port_in(PORTS)


def group_members(pgid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


class Run:
    """One supervised fake server: its notify socket, its attempts, and a way to stop it."""

    def __init__(self, tmp_path: Path, *fake_args: str, supervision: SupervisorOptions | None = None) -> None:
        self.port = free_port()
        self.pid_file = tmp_path / "pids"
        self.argv = [sys.executable, str(FAKE), "--port", str(self.port), "--pid-file", str(self.pid_file),
                     *fake_args]
        self.log = LogFile(tmp_path / "logs" / "serve.log")
        self.attempts: list[ServerProcess] = []
        self.spawned_at: list[float] = []
        self.lines: list[str] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        name = f"qwenops-it-{uuid.uuid4().hex}"
        self.sock.bind("\0" + name)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        # Drain the socket all the time, as systemd does: an unread queue holds only ~10 datagrams.
        self._reading = True
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        self.supervisor = Supervisor(
            supervision or SupervisorOptions(startup_timeout_s=20, drain_timeout_s=3, health_interval_s=0.2,
                                       health_failures=2, backoff_initial_s=0.2, backoff_max_s=1,
                                       max_quick_failures=3, quick_failure_window_s=60),
            spawn=self.spawn,
            prober=HealthChecker(f"http://127.0.0.1:{self.port}", "Qwen3-14B", timeout_s=1),
            notifier=Notifier("@" + name),
        )

    def spawn(self, on_line: Callable[[str], object]) -> ServerProcess:
        def sink(line: str) -> None:
            self.lines.append(line)
            on_line(line)

        process = spawn(self.argv, env=dict(os.environ), log=self.log, on_line=sink)
        self.attempts.append(process)
        self.spawned_at.append(time.monotonic())
        return process

    def _read_loop(self) -> None:
        while self._reading:
            try:
                self.messages.append((time.monotonic(), self.sock.recv(4096).decode()))
            except (TimeoutError, BlockingIOError):
                continue

    def start(self) -> threading.Thread:
        self.outcome: Outcome | None = None

        def target() -> None:
            self.outcome = self.supervisor.run()

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        return thread

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 60) -> None:
        poll_until(predicate, f"state {self.supervisor.state}; lines {self.lines[-5:]}", timeout_s, interval_s=0.02)

    def pids(self) -> tuple[int, int]:
        api, engine = self.pid_file.read_text().split()
        return int(api), int(engine)

    def finish(self, thread: threading.Thread, timeout_s: float = 15) -> Outcome:
        thread.join(timeout_s)
        assert not thread.is_alive(), f"supervisor still {self.supervisor.state}"
        self._reading = False
        self._reader.join()
        # Every sendto() returned before the supervisor's thread ended, so whatever the reader has
        # not taken yet is queued on the socket now: drain it all, without waiting on the reader.
        self.sock.setblocking(False)
        while True:
            try:
                self.messages.append((time.monotonic(), self.sock.recv(4096).decode()))
            except BlockingIOError:
                break
        self.sock.close()
        assert self.outcome is not None
        return self.outcome


@pytest.fixture
def cleanup() -> Iterator[list[Run]]:
    runs: list[Run] = []
    yield runs
    for run in runs:  # never leave a fake server behind, whatever a test did
        for attempt in run.attempts:
            attempt.kill()


def new_run(cleanup: list[Run], tmp_path: Path, *args: str, **kwargs: SupervisorOptions) -> Run:
    run = Run(tmp_path, *args, **kwargs)
    cleanup.append(run)
    return run


def test_ready_then_sigterm_leaves_no_process_and_systemd_hears_it_in_order(
    cleanup: list[Run], tmp_path: Path
) -> None:
    run = new_run(cleanup, tmp_path)
    thread = run.start()
    run.wait_for(lambda: run.supervisor.state is State.RUNNING)
    run.wait_for(lambda: any(m == "WATCHDOG=1" for _, m in run.messages[1:]))
    api, engine = run.pids()
    assert {p.pid for p in group_members(run.attempts[0].pgid)} == {api, engine}
    run.supervisor.request_stop("SIGTERM")
    outcome = run.finish(thread)
    assert outcome.state is State.STOPPED and outcome.reason == "SIGTERM; server drained"
    assert group_members(run.attempts[0].pgid) == []
    assert not psutil.pid_exists(engine) or psutil.Process(engine).status() == psutil.STATUS_ZOMBIE
    kinds = [m.split("\n")[0].split("=")[0] for _, m in run.messages]
    assert kinds[0] == "STATUS" and "READY" in kinds
    assert kinds.index("READY") < kinds.index("WATCHDOG") < kinds.index("STOPPING")
    assert kinds[-1] == "STOPPING"
    log = run.log.path.read_text()
    assert "Resolved architecture" in log and "Application startup complete" in log


def test_killing_the_engine_not_the_parent_is_detected_and_restarted(cleanup: list[Run], tmp_path: Path) -> None:
    run = new_run(cleanup, tmp_path)
    thread = run.start()
    run.wait_for(lambda: run.supervisor.state is State.RUNNING)
    first_pgid = run.attempts[0].pgid
    _api, engine = run.pids()
    killed_at = time.monotonic()
    os.kill(engine, signal.SIGKILL)
    run.wait_for(lambda: len(run.attempts) == 2)
    respawn_s = run.spawned_at[1] - killed_at
    run.wait_for(lambda: run.supervisor.state is State.RUNNING)
    assert group_members(first_pgid) == []
    run.supervisor.request_stop("SIGTERM")
    outcome = run.finish(thread)
    assert outcome.restarts == 1 and outcome.ok
    retry = next(t for t in outcome.transitions if t.event is Event.RETRY)
    assert "engine died: " in retry.reason and "EngineDeadError" in retry.reason
    assert respawn_s >= 0.2  # after the backoff; how soon is benchmarks/supervisor.py's measure, not a test's


def test_a_server_that_ignores_sigterm_is_killed_after_the_drain_timeout(cleanup: list[Run], tmp_path: Path) -> None:
    supervision = SupervisorOptions(drain_timeout_s=0.5, health_interval_s=0.2)
    run = new_run(cleanup, tmp_path, "--ignore-sigterm", supervision=supervision)
    thread = run.start()
    run.wait_for(lambda: run.supervisor.state is State.RUNNING)
    started = time.monotonic()
    run.supervisor.request_stop("SIGINT")
    outcome = run.finish(thread)
    assert outcome.reason == "SIGINT; server killed after the 0.5 s drain timeout"
    assert 0.5 <= time.monotonic() - started < 2.0
    assert group_members(run.attempts[0].pgid) == []


def test_a_second_stop_request_cuts_the_drain_short(cleanup: list[Run], tmp_path: Path) -> None:
    supervision = SupervisorOptions(drain_timeout_s=30, health_interval_s=0.2)
    run = new_run(cleanup, tmp_path, "--ignore-sigterm", supervision=supervision)
    thread = run.start()
    run.wait_for(lambda: run.supervisor.state is State.RUNNING)
    started = time.monotonic()
    run.supervisor.request_stop("SIGINT")
    threading.Timer(0.3, run.supervisor.request_stop, args=("SIGINT",)).start()
    outcome = run.finish(thread)
    assert outcome.reason == "SIGINT; server killed on a second stop request"
    assert time.monotonic() - started < 2.0  # not the 30 s drain
    assert group_members(run.attempts[0].pgid) == []


def test_an_engine_that_outlives_its_api_server_is_not_left_as_an_orphan(cleanup: list[Run], tmp_path: Path) -> None:
    supervision = SupervisorOptions(drain_timeout_s=0.5, health_interval_s=0.2)
    run = new_run(cleanup, tmp_path, "--orphan-engine", supervision=supervision)
    thread = run.start()
    run.wait_for(lambda: run.supervisor.state is State.RUNNING)
    _api, engine = run.pids()
    run.supervisor.request_stop("SIGTERM")
    outcome = run.finish(thread)
    assert "killed after" in outcome.reason  # the API server left; its engine had to be SIGKILLed
    assert group_members(run.attempts[0].pgid) == []
    assert not psutil.pid_exists(engine) or psutil.Process(engine).status() == psutil.STATUS_ZOMBIE


def test_a_classified_fatal_line_ends_fatal_without_restarting(cleanup: list[Run], tmp_path: Path) -> None:
    line = ("ValueError: To serve at least one request with the model's max seq len (40960), (6.25 GiB KV cache is "
            "needed, which is larger than the available KV cache memory (1.71 GiB). Based on the available memory, "
            "the estimated maximum model length is 11200.")
    run = new_run(cleanup, tmp_path, "--fatal-line", line)
    outcome = run.finish(run.start())
    assert outcome.state is State.FATAL and len(run.attempts) == 1
    assert outcome.cause is not None and outcome.cause.category == "max_len_exceeds_kv"
    assert "lower max_model_len to 11200" in outcome.reason
    assert run.messages[-1][1].startswith("STATUS=FATAL: max_model_len does not fit in the KV cache")
    assert group_members(run.attempts[0].pgid) == []


def test_repeated_crashes_back_off_then_end_fatal(cleanup: list[Run], tmp_path: Path) -> None:
    run = new_run(cleanup, tmp_path, "--exit-after", "0.1")
    outcome = run.finish(run.start(), timeout_s=30)
    assert outcome.state is State.FATAL and outcome.restarts == 2
    assert outcome.reason.startswith("3 failures within 60 s")
    gaps = [b - a for a, b in zip(run.spawned_at, run.spawned_at[1:], strict=False)]
    assert gaps[1] > gaps[0]  # 0.2 s then 0.4 s of backoff on top of the same start time


def test_the_log_file_is_size_capped_and_rotated(tmp_path: Path) -> None:
    log = LogFile(tmp_path / "serve.log", max_bytes=2000, backups=2)
    process = spawn([sys.executable, "-c", "for i in range(400): print('line', i, 'x' * 40)"],
                    env=dict(os.environ), log=log)
    process.popen.wait(10)
    process.stop(1)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["serve.log", "serve.log.1", "serve.log.2"]
    assert all((tmp_path / f).stat().st_size <= 2000 for f in files)
    assert (tmp_path / "serve.log").read_text().splitlines()[-1].startswith("line 399")


def test_an_unwritable_log_refuses_before_anything_is_spawned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from qwenops.errors import BadInputError

    started: list[object] = []
    real_popen = subprocess.Popen

    def popen(*args: Any, **kwargs: Any) -> Any:  # still spawns: the spy only records that it did
        started.append(args[0])
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", popen)
    marker = tmp_path / "spawned"
    (tmp_path / "serve.log").mkdir()  # the log path is a directory: the handler cannot open it
    with pytest.raises(BadInputError, match="cannot write the server log") as caught:
        spawn([sys.executable, "-c", f"open({str(marker)!r}, 'w')"], env=dict(os.environ),
              log=LogFile(tmp_path / "serve.log"))
    assert caught.value.field == "state_dir"
    # Asked of Popen, not of the marker after a sleep: a child slow to start would pass that unseen.
    assert started == []
    assert not marker.exists()


def test_a_failing_line_sink_does_not_stop_the_log_or_the_drain(tmp_path: Path) -> None:
    seen: list[str] = []

    def broken_sink(line: str) -> None:
        seen.append(line)
        raise BrokenPipeError(32, "Broken pipe")  # stderr closed under `qwenops serve 2>&1 | head`

    log = LogFile(tmp_path / "serve.log")
    # 200 KiB of output: far more than a pipe buffer, so an undrained pipe would block the child.
    process = spawn([sys.executable, "-c", "for i in range(2000): print('line', i, 'x' * 100)"],
                    env=dict(os.environ), log=log, on_line=broken_sink)
    assert process.popen.wait(10) == 0
    process.stop(1)
    lines = (tmp_path / "serve.log").read_text().splitlines()
    assert lines[-1].startswith("line 1999")
    assert sum(line.startswith("qwenops: output sink failed") for line in lines) == 1
    assert len(seen) == 2000  # the sink is still offered every line: the bootlog shares it with echo
