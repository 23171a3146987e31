"""The state machine table: every edge the issue names exists, nothing else does."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from qwenops.supervisor import states
from qwenops.supervisor.states import TERMINAL, TRANSITIONS, Event, InvalidTransition, State, transition


def test_the_edges_of_a_supervised_life() -> None:
    path = [
        (Event.SPAWN, State.STARTING), (Event.READY, State.RUNNING), (Event.EXIT, State.EXITED),
        (Event.RETRY, State.BACKOFF), (Event.SPAWN, State.STARTING), (Event.READY, State.RUNNING),
        (Event.STOP, State.STOPPING), (Event.STOPPED, State.STOPPED),
    ]
    state = State.STOPPED
    for event, expected in path:
        state = transition(state, event)
        assert state is expected


def test_failures_end_fatal_and_stops_from_idle_states_skip_draining() -> None:
    assert transition(State.EXITED, Event.GIVE_UP) is State.FATAL
    assert transition(State.STARTING, Event.EXIT) is State.EXITED
    assert transition(State.BACKOFF, Event.STOP) is State.STOPPED
    assert transition(State.STARTING, Event.STOP) is State.STOPPING


# The whole table, written out rather than read back from TRANSITIONS, so a wrong edge fails here.
EXPECTED: dict[tuple[State, Event], State] = {
    (State.STOPPED, Event.SPAWN): State.STARTING,
    (State.STARTING, Event.READY): State.RUNNING,
    (State.STARTING, Event.EXIT): State.EXITED,  # crashed while loading, or killed at the start-up timeout
    (State.STARTING, Event.STOP): State.STOPPING,  # a server is alive: drain it
    (State.RUNNING, Event.EXIT): State.EXITED,
    (State.RUNNING, Event.STOP): State.STOPPING,
    (State.EXITED, Event.RETRY): State.BACKOFF,
    (State.EXITED, Event.GIVE_UP): State.FATAL,
    (State.EXITED, Event.STOP): State.STOPPED,  # nothing alive to drain
    (State.BACKOFF, Event.SPAWN): State.STARTING,
    (State.BACKOFF, Event.STOP): State.STOPPED,  # nothing alive to drain
    (State.STOPPING, Event.STOP): State.STOPPING,  # a second signal only shortens the drain
    (State.STOPPING, Event.STOPPED): State.STOPPED,  # drained, exited by itself while draining, or killed
}


def test_the_table_is_exactly_the_expected_one() -> None:
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize(("state", "event"), list(itertools.product(State, Event)))
def test_every_state_and_event_goes_where_expected_or_raises(state: State, event: Event) -> None:
    if (state, event) in EXPECTED:
        assert transition(state, event) is EXPECTED[(state, event)]
    else:
        with pytest.raises(InvalidTransition, match=f"from {state.value} on {event.value}"):
            transition(state, event)


def test_terminal_states_have_no_way_out_but_a_fresh_start() -> None:
    for (source, _event), _target in TRANSITIONS.items():
        assert source is not State.FATAL
    assert [e for (s, e) in TRANSITIONS if s is State.STOPPED] == [Event.SPAWN]
    assert {State.STOPPED, State.FATAL} == TERMINAL
    assert set(TRANSITIONS.values()) == set(State)  # every state is reachable


def test_each_edge_has_a_why_comment_and_the_module_imports_nothing_heavy() -> None:
    source = Path(states.__file__).read_text()
    table = source[source.index("TRANSITIONS:"):source.index("class InvalidTransition")]
    entries = [line for line in table.splitlines() if line.strip().startswith("(State.")]
    for line_no, line in enumerate(table.splitlines()):
        if line.strip().startswith("(State."):
            above = table.splitlines()[:line_no]
            assert any(a.strip().startswith("#") for a in above[-3:]), line
    assert len(entries) == len(TRANSITIONS)
    imports = re.findall(r"^(?:from|import) (\S+)", source, flags=re.M)
    assert set(imports) == {"__future__", "enum"}
