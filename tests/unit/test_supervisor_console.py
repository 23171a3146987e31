"""The console view: plain greppable lines when stderr is not a terminal (journald, docker logs)."""

from __future__ import annotations

import io

from rich.console import Console

from qwenops.cli.views.serve import ConsoleReporter
from qwenops.supervisor.bootlog import Phase
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


def test_on_a_terminal_the_phase_is_a_live_line_that_goes_away_when_ready() -> None:
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=True, no_color=True)
    reporter = ConsoleReporter(console)
    reporter.on_transition(Transition(0.0, State.STOPPED, Event.SPAWN, State.STARTING, "spawned pid 7"))
    assert reporter._progress is not None
    reporter.on_phase(Phase.KV_CACHE, 3.0)
    assert reporter._progress.tasks[0].description == "vLLM starting: allocating KV cache"
    reporter.on_transition(Transition(5.0, State.STARTING, Event.READY, State.RUNNING, "ready after 5.0 s"))
    assert reporter._progress is None  # transient: the spinner line is gone once the server is up
    assert "starting: allocating KV cache (3.0 s)" not in out.getvalue()  # no duplicate plain line


def test_server_lines_from_the_pump_thread_never_overlap_the_supervisors_output() -> None:
    import threading
    import time

    class SlowConsole:
        """Records whether two threads were ever inside print at once."""

        is_terminal = False

        def __init__(self) -> None:
            self.inside = 0
            self.overlapped = False

        def print(self, *_args: object, **_kwargs: object) -> None:
            self.inside += 1
            self.overlapped |= self.inside > 1
            time.sleep(0.01)
            self.inside -= 1

    console = SlowConsole()
    reporter = ConsoleReporter(console, echo_server=True)  # type: ignore[arg-type]

    def pump() -> None:
        for i in range(20):
            reporter.server_line(f"line {i}")

    thread = threading.Thread(target=pump)
    thread.start()
    for _ in range(20):
        reporter.on_transition(Transition(0.0, State.STARTING, Event.READY, State.RUNNING, "ready"))
    thread.join()
    assert not console.overlapped
