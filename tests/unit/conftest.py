"""Fixtures the unit tests share: the synthetic vLLM upstream (gateway tests) and scripted hostile
servers (status and troubleshoot tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.sse_server import Answer
from tests.synthetic_upstream import SyntheticUpstream, synthetic_upstream
from tests.unit.test_status_hostile import Site


@pytest.fixture
def upstream() -> Iterator[SyntheticUpstream]:
    with synthetic_upstream() as running:
        yield running


@pytest.fixture
def site() -> Iterator[Callable[[dict[str, Answer]], Site]]:
    sites: list[Site] = []

    def make(routes: dict[str, Answer]) -> Site:
        sites.append(Site(routes))
        return sites[-1]

    yield make
    for one in sites:
        one.close()
