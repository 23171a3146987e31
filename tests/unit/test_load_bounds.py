"""Load that qwenops sends, bounded whatever its input says: troubleshoot --probe's concurrency ramp (the
profile's max_num_seqs, up to 10^9: a thread and a connection per answer) stops at MAX_PROBE_CONCURRENCY
(audit 4: a million ran past 150 s, 7,546 requests in); a tune level stops at its first timeout (audit 5)."""

from __future__ import annotations

import dataclasses

import pytest

from qwenops.config.loader import resolve_profile
from qwenops.config.settings import load_settings
from qwenops.config.target import ConfiguredServer
from qwenops.troubleshoot import probes
from qwenops.untrusted import MAX_PROBE_CONCURRENCY


def server_with(max_num_seqs: int) -> ConfiguredServer:
    profile = dataclasses.replace(resolve_profile("cpu-tiny", env={}).profile, max_num_seqs=max_num_seqs)
    return ConfiguredServer("http://127.0.0.1:9", "http://127.0.0.1:9", "test", profile, load_settings())


@pytest.mark.parametrize(("wanted", "top"), [(1_000_000, MAX_PROBE_CONCURRENCY), (48, 48)])
def test_the_ramp_stops_at_the_cap_and_says_so(wanted: int, top: int, monkeypatch: pytest.MonkeyPatch) -> None:
    levels: list[int] = []

    def level(_server: ConfiguredServer, at: int) -> tuple[float, float]:
        levels.append(at)
        return 0.0, 0.5

    monkeypatch.setattr(probes, "_level", level)
    findings, ramp = probes.probe_memory(server_with(wanted))
    assert max(levels) == top and levels == sorted(levels) and len(levels) <= 11
    assert [r[0] for r in ramp] == levels
    (finding,) = findings
    if wanted > top:
        assert f"no preemption up to {top} concurrent answers" in finding.title
        assert f"max_num_seqs {wanted}" in finding.evidence[0].quote
    else:
        assert finding.title == "max_num_seqs binds before the KV cache"


def test_a_tune_level_ends_at_the_first_request_that_timed_out() -> None:
    """A server that stopped answering held tune for the level's requests times 120 s, whatever --budget-min
    said (audit 5): the first timeout ends the level."""
    from qwenops.stream.client import Timeouts
    from qwenops.tune.measure import run_level
    from qwenops.tune.workload import synthetic_workload
    from tests.sse_server import Conn, Seen, serving

    def silent(conn: Conn, _seen: Seen) -> None:
        conn.head(200, chunked=True)
        conn.sleep(30)

    with serving(silent) as fake:
        server = dataclasses.replace(server_with(8), url=fake.base_url)
        samples = run_level(server, synthetic_workload(8, 4).requests, concurrency=1, count=16,
                            timeouts=Timeouts(connect_s=1, read_s=0.3))
    assert len(samples) == 1 and samples[0].error is not None and samples[0].error.startswith("client_timeout")
