"""The one way a test waits: poll a condition until it holds, with a deadline that only a hang reaches.

A test waits on evidence (a counter, a state, a file, a frame), never on a sleep; the deadline is
generous because a loaded 2-core machine is slow, not wrong. Speed goals live in benchmarks/.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(condition: Callable[[], T | None], what: str, timeout_s: float = 60.0,
               interval_s: float = 0.05) -> T:
    """Call CONDITION until it returns something truthy and return that; fail naming WHAT (and the last
    value seen) when TIMEOUT_S passes first. Exceptions from CONDITION propagate."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s (last seen: {value!r})")
        time.sleep(interval_s)
