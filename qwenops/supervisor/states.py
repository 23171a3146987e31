"""The supervisor's state machine: states, events and the one `transition()` that joins them.

Deliberately free of imports beyond the standard library's enum: every edge is data, so unit tests
walk the whole table without processes, clocks or sockets (Supervisor/supervisor's states.py is the
model). The runner (qwenops.supervisor.runner) decides *which* event happened; this module only says
where that event leads.
"""

from __future__ import annotations

from enum import Enum


class State(str, Enum):
    STOPPED = "STOPPED"  # no server process; the initial state and the end of a clean shutdown
    STARTING = "STARTING"  # spawned, waiting for /health 200 and /v1/models listing the served name
    RUNNING = "RUNNING"  # ready and answering health probes
    BACKOFF = "BACKOFF"  # the server failed; waiting out the restart delay
    STOPPING = "STOPPING"  # asked to stop: SIGTERM forwarded, draining, then SIGKILL of the group
    EXITED = "EXITED"  # the server's process group is gone and the runner has not yet decided what next
    FATAL = "FATAL"  # gave up: the cause cannot be fixed by restarting; the supervisor exits non-zero


class Event(str, Enum):
    SPAWN = "spawn"  # a server process was started
    READY = "ready"  # /health answered 200 and /v1/models lists the served model name
    EXIT = "exit"  # the server (or, after a failed probe or start-up timeout, we) ended its process group
    RETRY = "retry"  # the failure may be transient and the quick-failure budget is not spent
    GIVE_UP = "give_up"  # a classified cause restarting cannot fix, or too many quick failures
    STOP = "stop"  # SIGTERM / SIGINT (or the caller) asked for a shutdown
    STOPPED = "stopped"  # no process of the server's group is left


TERMINAL: frozenset[State] = frozenset({State.STOPPED, State.FATAL})

# (from, event) -> to. Anything not listed is a bug in the runner and raises InvalidTransition.
TRANSITIONS: dict[tuple[State, Event], State] = {
    # The only way out of STOPPED: a fresh supervisor spawns the server.
    (State.STOPPED, Event.SPAWN): State.STARTING,
    # Ready means clients can stream now: both the engine (/health) and the route with our model name.
    (State.STARTING, Event.READY): State.RUNNING,
    # A crash while loading (OOM, bad flag, port taken) or a start-up timeout we enforced by killing it.
    (State.STARTING, Event.EXIT): State.EXITED,
    # A crash in service, or too many failed health probes after which we killed the group.
    (State.RUNNING, Event.EXIT): State.EXITED,
    # The failure looks transient (engine died, port briefly taken): wait the backoff, then restart.
    (State.EXITED, Event.RETRY): State.BACKOFF,
    # Restarting would hit the same wall (model missing, max_model_len too large) or keeps failing.
    (State.EXITED, Event.GIVE_UP): State.FATAL,
    # The backoff delay has passed and the next attempt is spawned.
    (State.BACKOFF, Event.SPAWN): State.STARTING,
    # Shutdown requested while a server is alive: forward SIGTERM and drain before killing the group.
    (State.STARTING, Event.STOP): State.STOPPING,
    (State.RUNNING, Event.STOP): State.STOPPING,
    # A second signal while draining changes nothing here; the runner may shorten the drain.
    (State.STOPPING, Event.STOP): State.STOPPING,
    # Shutdown requested while no server is alive: nothing to drain.
    (State.BACKOFF, Event.STOP): State.STOPPED,
    (State.EXITED, Event.STOP): State.STOPPED,
    # The group is empty (drained, exited on its own while draining, or SIGKILLed): a clean stop.
    (State.STOPPING, Event.STOPPED): State.STOPPED,
}


class InvalidTransition(Exception):
    """An event that has no edge from the current state (a bug in the runner, never user input)."""

    def __init__(self, state: State, event: Event) -> None:
        super().__init__(f"no transition from {state.value} on {event.value}")
        self.state = state
        self.event = event


def transition(state: State, event: Event) -> State:
    """The state that `event` leads to from `state`; raises InvalidTransition for a missing edge."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(state, event) from None
