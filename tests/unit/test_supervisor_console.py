"""The console view: plain greppable lines when stderr is not a terminal (journald, docker logs)."""

from __future__ import annotations

import io

from rich.console import Console

from qwenops.supervisor.bootlog import Phase
from qwenops.supervisor.console import ConsoleReporter
from qwenops.supervisor.runner import Transition
from qwenops.supervisor.states import Event, State


def test_transitions_phases_and_server_lines_as_plain_lines() -> None:
    out = io.StringIO()
    reporter = ConsoleReporter(Console(file=out, width=200, no_color=True), echo_server=True)
    reporter.on_transition(Transition(0.0, State.STOPPED, Event.SPAWN, State.STARTING, "spawned pid 7"))
    reporter.on_phase(Phase.LOADING_WEIGHTS, 41.94)
    reporter.server_line("(Worker pid=8) INFO [x] Loading [weights] took 0.01 seconds")
    reporter.on_transition(Transition(47.0, State.STARTING, Event.READY, State.RUNNING, "ready after 47.0 s"))
    reporter.close()
    assert out.getvalue().splitlines() == [
        "qwenops STOPPED → STARTING spawned pid 7",
        "qwenops starting: loading weights (41.9 s)",
        "(Worker pid=8) INFO [x] Loading [weights] took 0.01 seconds",  # not eaten as rich markup
        "qwenops STARTING → RUNNING ready after 47.0 s",
    ]


def test_quiet_keeps_the_server_output_off_the_console() -> None:
    out = io.StringIO()
    reporter = ConsoleReporter(Console(file=out, no_color=True), echo_server=False)
    reporter.server_line("INFO:     Application startup complete.")
    assert out.getvalue() == ""
