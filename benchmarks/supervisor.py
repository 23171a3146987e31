"""Supervisor reaction times, measured on real processes (the fake vLLM tree from the tests).

    python benchmarks/supervisor.py [--rounds 7]

Each round runs the real Supervisor, HealthChecker, process group handling and an sd_notify socket
against tests/integration/fake_vllm.py (an API server process plus an "engine" child, like vLLM):
  ready:   first 200 on /health (seen by a 2 ms poller) -> READY=1 received on the notify socket
  restart: engine child SIGKILLed -> the next server spawned (the profile's 1 s backoff included)
  stop:    stop requested (what SIGTERM does) -> no live process of the group (drain_timeout_s 0)
Goals (issue 3): ready <= 0.5 s, restart <= 1 s + backoff, stop <= 2 s.
The real engine's numbers come from tests/integration/test_serve_engine.py (printed with -s).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # measure this checkout's qwenops, not whichever is installed

import httpx  # noqa: E402
import psutil  # noqa: E402

from qwenops.config.loader import load_profile  # noqa: E402
from qwenops.supervisor.health import HealthChecker  # noqa: E402
from qwenops.supervisor.notify import Notifier  # noqa: E402
from qwenops.supervisor.process import ServerProcess, spawn  # noqa: E402
from qwenops.supervisor.runner import Supervisor  # noqa: E402

FAKE = REPO / "tests" / "integration" / "fake_vllm.py"
PORT = 18349


def live(pids: set[int]) -> bool:
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            continue
    return False


def wait(predicate: Callable[[], bool], timeout_s: float = 20.0) -> float:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step timed out")
        time.sleep(0.001)
    return time.monotonic()


def one_round(backoff_s: float) -> tuple[float, float, float]:  # noqa: PLR0915 (one scenario, top to bottom)
    supervision = load_profile("cpu-tiny", env={}).supervise.model_copy(update={
        "drain_timeout_s": 0.0, "health_interval_s": 0.5, "backoff_initial_s": backoff_s,
    })
    name = f"qwenops-bench-{uuid.uuid4().hex}"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind("\0" + name)
    notify.settimeout(0.05)
    ready_at: list[float] = []
    spawned: list[tuple[float, ServerProcess]] = []
    pid_file = Path(f"/tmp/{name}.pids")
    running = True

    def read() -> None:
        while running:
            try:
                if notify.recv(4096).startswith(b"READY=1"):
                    ready_at.append(time.monotonic())
            except OSError:
                continue

    def start(on_line: Callable[[str], object]) -> ServerProcess:
        process = spawn([sys.executable, str(FAKE), "--port", str(PORT), "--pid-file", str(pid_file)],
                        env=dict(os.environ), log=None, on_line=on_line)
        spawned.append((time.monotonic(), process))
        return process

    first_health: list[float] = []

    def poll_health() -> None:
        with httpx.Client(timeout=0.2, trust_env=False) as client:
            while not first_health:
                try:
                    if client.get(f"http://127.0.0.1:{PORT}/health").status_code == 200:
                        first_health.append(time.monotonic())
                except httpx.HTTPError:
                    time.sleep(0.002)

    supervisor = Supervisor(supervision, spawn=start, prober=HealthChecker(f"http://127.0.0.1:{PORT}", "Qwen3-14B"),
                            notifier=Notifier("@" + name))
    threads = [threading.Thread(target=f, daemon=True) for f in (read, poll_health)]
    runner = threading.Thread(target=supervisor.run, daemon=True)
    for thread in (*threads, runner):
        thread.start()
    try:
        wait(lambda: bool(ready_at))
        ready_s = ready_at[0] - first_health[0]

        _api, engine = (int(x) for x in pid_file.read_text().split())
        crashed = time.monotonic()
        os.kill(engine, signal.SIGKILL)
        wait(lambda: len(spawned) == 2)
        restart_s = spawned[1][0] - crashed
        wait(lambda: len(ready_at) == 2)

        pids = {int(x) for x in pid_file.read_text().split()}
        stop_requested = time.monotonic()
        supervisor.request_stop("SIGTERM")
        gone = wait(lambda: not live(pids))
        stop_s = gone - stop_requested
        runner.join(10)
    finally:
        running = False
        for _, process in spawned:
            process.kill()
        notify.close()
        pid_file.unlink(missing_ok=True)
    return ready_s, restart_s, stop_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    backoff = load_profile("cpu-tiny", env={}).supervise.backoff_initial_s
    results = [one_round(backoff) for _ in range(args.rounds)]
    rows = [
        ("/health 200 -> READY=1", [r[0] for r in results], 0.5),
        (f"engine crash -> restart spawned (backoff {backoff:g} s)", [r[1] for r in results], 1.0 + backoff),
        ("  same, less the backoff", [r[1] - backoff for r in results], 1.0),
        ("stop requested -> group gone (drain 0)", [r[2] for r in results], 2.0),
    ]
    print(f"Supervisor reaction times, {args.rounds} rounds on the fake vLLM tree, {os.cpu_count()} CPUs")
    print(f"{'measure':50} {'median s':>9} {'max s':>7} {'goal s':>7} {'median/goal':>12}")
    failed = False
    for name, values, goal in rows:
        median = statistics.median(values)
        failed |= median > goal
        print(f"{name:50} {median:9.3f} {max(values):7.3f} {goal:7.2f} {median / goal:12.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
