"""The FAQ's CPU row as a rule (`host_findings` on HostEvidence fixtures) and a live server that does not
answer in time as evidence beside the host's (a real socket on 127.0.0.1 that accepts and never answers).

The rule: on a contended host, a process that is not vLLM is named when it takes half a core, or twice a
fair share, or runs a busy loop (a thread runnable throughout the sample), and a twentieth of a core at
least; an idle host names nobody. A server that does not answer is one piece of
evidence: a warning that follows from the host's contention, an error when nothing explains it, exit 3 only
when there is nothing else to say.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from click.testing import CliRunner

from qwenops import untrusted
from qwenops.cli import cli
from qwenops.troubleshoot.live import BusyProcess, HostEvidence
from qwenops.troubleshoot.rules import host_findings
from qwenops.vllmlog.classify import Finding
from tests.conftest import REPO
from tests.polling import poll_until
from tests.sse_server import Answer
from tests.unit.test_status_hostile import Site, healthy_routes, silent

QUIET = HostEvidence(cpu_count=2, load_1m=0.3, cpu_busy_percent=12.0, steal_percent=0.0, busiest=(),
                     ram_available_gib=20.0, ram_total_gib=24.0, swap_used_gib=0.0, gpu_error=None, runnable=0.4)
# The CI host the FAQ test ran on: two cores, fourteen threads runnable (a second test worker, its vLLM,
# the burners): a fair share is a seventh of a core, and no process gets half a core.
CROWDED = replace(QUIET, load_1m=6.2, cpu_busy_percent=100.0, runnable=14.0, fair_share_percent=100.0 * 2 / 14)


def cpu(host: HostEvidence, *busy: BusyProcess, vllm: frozenset[int] = frozenset()) -> Finding | None:
    found = [f for f in host_findings(replace(host, busiest=busy), vllm_pids=vllm) if f.category == "high_latency_cpu"]
    assert len(found) <= 1
    return found[0] if found else None


def named(finding: Finding | None) -> list[int]:
    return [] if finding is None else [int(p) for p in finding.fix.split("renice +10 -p ")[1].rstrip("`)").split()]


# ------------------------------------------------------------------------------------------ the rule


def test_a_burner_on_a_crowded_host_is_named_though_it_gets_less_than_half_a_core() -> None:
    """2 cores, 14 runnable: a process at nice -5 gets about 2.4 fair shares (34% of a core)."""
    finding = cpu(CROWDED, BusyProcess(4242, "qwenops-burn", 34.0), BusyProcess(7, "bash", 3.0))
    assert named(finding) == [4242]
    assert finding is not None and "qwenops-burn (pid 4242)" in finding.fix
    assert "a fair share is 14% of a core each" in finding.evidence[0].quote
    assert finding.evidence[1].quote == "pid 4242 qwenops-burn: 34% of a core"


def test_a_busy_loop_at_its_fair_share_is_named_by_its_busy_loop() -> None:
    """At the default priority a busy loop gets one fair share or less (cgroups, load this process cannot see)
    and waits for a CPU the rest of the time: a thread runnable throughout the sample."""
    burner = BusyProcess(4242, "qwenops-burn", 9.0, waiting_percent=90.0, busy_threads=1)
    finding = cpu(CROWDED, burner)
    assert named(finding) == [4242]
    assert finding is not None
    assert finding.evidence[1].quote == ("pid 4242 qwenops-burn: 9% of a core (and 90% more waiting for a CPU; "
                                         "1 busy loop, runnable throughout)")
    # The same share without a busy loop (threads that get what they ask for) is no competitor.
    assert cpu(CROWDED, replace(burner, waiting_percent=2.0, busy_threads=0)) is None
    assert cpu(CROWDED, replace(burner, waiting_percent=None, busy_threads=None)) is None  # the OS does not say


def test_a_starved_or_niced_busy_loop_is_not_named() -> None:
    """Under a twentieth of a core (a nice 19 batch job, or the sample's noise) is not what slows vLLM."""
    assert cpu(CROWDED, BusyProcess(9, "indexer", 3.0, waiting_percent=96.0, busy_threads=1)) is None
    assert cpu(CROWDED, BusyProcess(9, "sshd", 6.0, waiting_percent=30.0, busy_threads=0)) is None


def test_vllm_is_never_named_and_its_share_is_shown_beside_the_burners() -> None:
    finding = cpu(CROWDED, BusyProcess(10, "VLLM::EngineCore", 60.0, 40.0, 1), BusyProcess(11, "python3", 8.0, 0.0, 0),
                  BusyProcess(4242, "qwenops-burn", 40.0, 60.0, 1), vllm=frozenset({10, 11}))
    assert named(finding) == [4242]
    assert finding is not None and finding.evidence[-1].quote == "vLLM's own processes: 68% of a core in all (2 busy)"
    assert cpu(CROWDED, BusyProcess(10, "VLLM::EngineCore", 90.0, 10.0, 1), vllm=frozenset({10})) is None


def test_an_idle_host_names_nobody_whatever_a_process_takes() -> None:
    """A busy loop on a host with cores to spare takes nothing from vLLM."""
    wide = replace(QUIET, cpu_count=64, load_1m=2.0, cpu_busy_percent=3.0, runnable=2.0, fair_share_percent=100.0)
    assert cpu(wide, BusyProcess(4242, "qwenops-burn", 100.0, 0.0, 1)) is None
    assert cpu(QUIET, BusyProcess(7, "bash", 20.0, 80.0, 1)) is None  # 2 cores, 0.4 runnable: not contended


def test_load_the_sample_cannot_see_lowers_the_fair_share() -> None:
    """In a container the host's other containers are invisible: 2.2 threads runnable seen on 2 cores would be
    no crowd, but a thread runnable throughout got a sixth of a core: that is the fair share there."""
    host = replace(CROWDED, load_1m=11.0, runnable=2.2, fair_share_percent=17.0)
    finding = cpu(host, BusyProcess(4242, "burn", 36.0), BusyProcess(4243, "make", 30.0))
    assert named(finding) == [4242]  # twice 17%; 30% is not
    assert finding is not None and "2.2 threads runnable on average: a fair share is 17% of a core each" in \
        finding.evidence[0].quote


def test_without_the_schedulers_figures_the_load_gives_the_fair_share() -> None:
    """Not Linux (no schedstat): the 1-minute load stands in for the runnable count."""
    host = replace(CROWDED, runnable=None, fair_share_percent=None, load_1m=10.0)  # a fair share of 20%
    assert named(cpu(host, BusyProcess(4242, "burn", 41.0), BusyProcess(8, "make", 30.0))) == [4242]
    finding = cpu(host, BusyProcess(4242, "burn", 41.0))
    assert finding is not None and "threads runnable" not in finding.evidence[0].quote


def test_half_a_core_is_named_on_a_busy_host_as_before() -> None:
    host = replace(QUIET, cpu_busy_percent=97.0)
    assert named(cpu(host, BusyProcess(20, "ffmpeg", 55.0), BusyProcess(21, "top", 4.0))) == [20]


def test_every_process_the_rule_names_is_in_the_fix_with_its_pid() -> None:
    burners = [BusyProcess(100 + i, f"burn{i}", 15.0, 84.0, 1) for i in range(6)]
    finding = cpu(CROWDED, *burners)
    assert named(finding) == [b.pid for b in burners]
    assert finding is not None and all(f"{b.name} (pid {b.pid})" in finding.fix for b in burners)


def test_the_hosts_sample_says_how_long_a_busy_loop_waited() -> None:
    """read_host on this host: a busy loop's share and (on Linux) its run-queue wait, and the runnable count."""
    from qwenops.troubleshoot.live import read_host

    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        def sampled() -> tuple[HostEvidence, BusyProcess] | None:
            host = read_host(0.3)
            mine = [p for p in host.busiest if p.pid == burner.pid]
            # A sample may begin while the loop is still starting (importing, not runnable), or the
            # per-thread counters be read a moment apart on a crowded host: the next sample will do.
            if not mine or (sys.platform == "linux" and mine[0].busy_threads != 1):
                return None
            return host, mine[0]

        host, mine = poll_until(sampled, "the busy loop is in the host's sample, counted as a busy loop", 300)
    finally:
        burner.kill()
        burner.wait(10)
    assert mine.cpu_percent > 0
    if sys.platform == "linux":  # schedstat: a busy loop is runnable throughout, however loaded the host is
        assert mine.waiting_percent is not None and mine.waiting_percent >= 0 and mine.busy_threads == 1
        assert host.runnable is not None and host.runnable > 0
        assert host.fair_share_percent is not None and 0 < host.fair_share_percent <= 100


# ---------------------------------------------------------------------------- a server that does not answer


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(untrusted, "HTTP_TOTAL_DEADLINE_S", 1.0)
    monkeypatch.setattr(untrusted, "HTTP_READ_TIMEOUT_S", 0.5)


@pytest.fixture
def host_is(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[HostEvidence], None]]:
    """This host's sample, as a fixture gives it (the live sample of a shared test machine is not the case)."""
    from qwenops.troubleshoot import live, rules

    def use(host: HostEvidence) -> None:
        monkeypatch.setattr(live, "read_host", lambda sample_s=0.5: host)
        monkeypatch.setattr(rules, "vllm_process_ids", lambda: frozenset({10}))

    yield use


BURNING = replace(CROWDED, busiest=(BusyProcess(10, "VLLM::EngineCore", 12.0, 70.0, 1),
                                    BusyProcess(4242, "qwenops-burn", 34.0, 66.0, 1)))
NEVER: dict[str, Answer] = {"/health": silent, "/v1/models": silent, "/metrics": silent}


def troubleshoot(*args: str) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(cli, ["troubleshoot", *args, "--json"], catch_exceptions=False)
    assert result.exit_code != 4, (result.stdout, result.stderr)
    return result.exit_code, json.loads(result.stdout)


def findings(doc: dict[str, object]) -> list[dict[str, object]]:
    data = doc["data"]
    assert isinstance(data, dict)
    return list(data["findings"])


def test_a_starved_server_is_a_warning_under_the_hosts_burner(site: Callable[[dict[str, Answer]], Site], quick: None,
                                                                host_is: Callable[[HostEvidence], None]) -> None:
    host_is(BURNING)
    server = site(NEVER)
    code, doc = troubleshoot("--base-url", server.url)
    assert code == 0, doc  # contention slows answers: warnings, no error
    found = findings(doc)
    assert [f["category"] for f in found] == ["high_latency_cpu", "engine_stalled"]
    cpu_row, late = found
    assert "qwenops-burn (pid 4242)" in str(cpu_row["fix"]) and "renice +10 -p 4242" in str(cpu_row["fix"])
    assert late["severity"] == "warning"
    assert late["title"] == "the server did not answer /health, /v1/models, /metrics within 1 s (follows from " \
                            "high_latency_cpu above)"
    evidence = late["evidence"]
    assert isinstance(evidence, list) and evidence[0]["source"] == f"GET {server.url}/health"
    assert "within 1 s" in evidence[0]["quote"]
    data = doc["data"]
    assert isinstance(data, dict)
    assert data["sources"][0] == {"name": f"server {server.url}", "lines": None,
                                  "note": "did not answer /health, /v1/models, /metrics in time"}


def test_a_server_that_does_not_answer_on_an_idle_host_is_exit_3(
        site: Callable[[dict[str, Answer]], Site], quick: None, host_is: Callable[[HostEvidence], None]) -> None:
    """Nothing else to say: the server could not be read, one line, as with --no-host."""
    host_is(QUIET)
    server = site(NEVER)
    for args in (("--base-url", server.url), ("--base-url", server.url, "--no-host")):
        code, doc = troubleshoot(*args)
        assert code == 3, doc
        errors = doc["errors"]
        assert isinstance(errors, list) and errors[0]["code"] == "timeout" and errors[0]["field"] == "--base-url"
        # "within 1 s" (the whole deadline) or "sent nothing for 1 s" (a read), whichever ran out first
        assert f"{server.url}/health" in errors[0]["message"] and " 1 s" in errors[0]["message"]


def test_a_late_server_beside_a_logs_error_is_an_error_of_its_own(
        site: Callable[[dict[str, Answer]], Site], quick: None) -> None:
    """Nothing on the host explains it: a server that accepts and does not answer is hung (error)."""
    server = site(NEVER)
    log = REPO / "tests" / "data" / "logs" / "vllm_cpu_port_in_use.log"
    code, doc = troubleshoot("--log", str(log), "--base-url", server.url, "--no-host")
    assert code == 1
    found = {f["category"]: f for f in findings(doc)}
    assert found["port_in_use"]["severity"] == "error"
    assert found["engine_stalled"]["severity"] == "error"
    assert "hung or overloaded" in str(found["engine_stalled"]["fix"]) and "this host was not read" in \
        str(found["engine_stalled"]["fix"])


def test_a_path_that_does_not_answer_is_said_once(site: Callable[[dict[str, Answer]], Site], quick: None,
                                                   host_is: Callable[[HostEvidence], None]) -> None:
    """/health and /v1/models answer, /metrics does not: one finding on /metrics, not also 'no metrics'."""
    host_is(BURNING)
    server = site({**healthy_routes(), "/metrics": silent})
    code, doc = troubleshoot("--base-url", server.url, "--probe")
    assert code == 0, doc
    found = {f["category"]: f for f in findings(doc)}
    assert set(found) == {"high_latency_cpu", "engine_stalled"}
    evidence = found["engine_stalled"]["evidence"]
    assert isinstance(evidence, list) and [e["source"] for e in evidence] == [f"GET {server.url}/metrics"]
    data = doc["data"]
    assert isinstance(data, dict)
    assert data["sources"][-1]["note"] == "not sent: the server did not answer in time"  # the probes
    assert [s.path for s in server.seen if s.method != "GET"] == []
