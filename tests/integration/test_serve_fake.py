"""qwenops.serve.run.serve() end to end on the fake vLLM: signals, environment, log file, result."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from qwenops.serve.run import ServePlan, plan_serve, serve
from qwenops.supervisor.bootlog import Phase
from qwenops.supervisor.runner import Transition
from qwenops.supervisor.states import State
from tests.integration.test_supervisor_process import FAKE, free_port


def fake_plan(port: int, *extra: str) -> ServePlan:
    plan = plan_serve("cpu-tiny", port=port)
    return plan.model_copy(update={
        "argv": (sys.executable, str(FAKE), "--port", str(port), *extra),
        "builds_tiny_model": False,
    })


class SignalWhenRunning:
    """An observer: once the supervisor reports RUNNING, another thread sends `sig` to this process,
    as an operator would. Waiting for that transition, not a fixed time after /v1/models first
    answers, is what makes the expected STARTING, RUNNING, STOPPING, STOPPED certain."""

    def __init__(self, sig: signal.Signals) -> None:
        self.sig = sig

    def on_transition(self, change: Transition) -> None:
        if change.target is State.RUNNING:
            threading.Thread(target=os.kill, args=(os.getpid(), self.sig), daemon=True).start()

    def on_phase(self, phase: Phase, elapsed_s: float) -> None:
        pass

    def on_note(self, text: str) -> None:
        pass


def _not_handled_by_serve(num: int, _frame: object) -> None:
    raise AssertionError(f"serve() left {signal.Signals(num).name} to the caller's handler")


# SIGHUP (terminal closed, ssh dropped) and SIGQUIT reach only qwenops: the server has its own session.
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT])
def test_a_signal_stops_serve_cleanly_and_the_key_goes_by_environment(
    sig: signal.Signals, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setenv("QWENOPS_API_KEY", "sk-test-key")
    port = free_port()
    plan = fake_plan(port)
    lines: list[str] = []
    # Stands in for the default action (which would end pytest itself); restored afterwards.
    original = signal.signal(sig, _not_handled_by_serve)
    request.addfinalizer(lambda: signal.signal(sig, original))
    handler_before = signal.getsignal(sig)
    result = serve(plan, echo=lines.append, observer=SignalWhenRunning(sig))
    assert result.ok and result.state == "STOPPED"
    assert result.reason == f"{sig.name}; server drained"
    assert [t.target for t in result.transitions] == ["STARTING", "RUNNING", "STOPPING", "STOPPED"]
    assert any("api key from VLLM_API_KEY: set" in line for line in lines)
    assert all("sk-test-key" not in arg for arg in plan.argv)
    log = Path(result.log_file).read_text()
    assert "Application startup complete" in log and "sk-test-key" not in log
    assert signal.getsignal(sig) is handler_before  # serve() restores the caller's handlers


def test_serve_json_result_after_a_fatal_start(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    plan = fake_plan(port, "--fatal-line", "ERROR: [Errno 98] error while attempting to bind on address "
                                           f"('127.0.0.1', {port}): address already in use")
    plan = plan.model_copy(update={"supervise": plan.supervise.model_copy(
        update={"backoff_initial_s": 0.1, "max_quick_failures": 2})})
    result = serve(plan, handle_signals=False)
    assert (result.ok, result.state, result.restarts) == (False, "FATAL", 1)
    assert result.cause is not None and result.cause.category == "port_in_use"
    assert result.reason.startswith("2 failures within 600 s; last: the port is already taken")


def test_notify_socket_is_not_inherited_by_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from qwenops.serve.run import child_env

    env = child_env(fake_plan(1), None, {"NOTIFY_SOCKET": "@sd", "WATCHDOG_USEC": "1", "HOME": "/root"})
    assert "NOTIFY_SOCKET" not in env and "WATCHDOG_USEC" not in env
    assert env["HOME"] == "/root" and env["PYTHONUNBUFFERED"] == "1" and env["VLLM_CPU_KVCACHE_SPACE"] == "1"
