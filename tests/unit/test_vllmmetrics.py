"""vLLM's /metrics read with prometheus_client's parser: names across versions, interval quantiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwenops.troubleshoot.live import BusyProcess, HostEvidence, ServerEvidence
from qwenops.troubleshoot.rules import host_findings, server_findings
from qwenops.vllmmetrics import Histogram, MetricsFormatError, interval, parse

RECORDED = Path(__file__).resolve().parent.parent / "data" / "metrics" / "vllm_cpu_metrics.txt"


def test_a_recorded_cpu_server_scrape() -> None:
    snap = parse(RECORDED.read_text(), taken_s=100.0)
    assert snap.is_vllm
    assert snap.counters["generation_tokens"] == 1663 and snap.counters["requests_finished"] == 15
    assert snap.histograms["ttft"].count == 15 and snap.gauges["kv_cache_usage"] == 0.0


def test_v0_names_are_read_too() -> None:
    text = ("# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc{model_name=\"m\"} 0.97\n"
            "# TYPE vllm:num_preemptions_total counter\nvllm:num_preemptions_total{model_name=\"m\"} 12.0\n")
    snap = parse(text)
    assert (snap.gauges["kv_cache_usage"], snap.counters["preemptions"]) == (0.97, 12.0)


def test_quantiles_interpolate_inside_the_bucket_like_prometheus() -> None:
    # 10 observations: 4 <= 0.1, 6 more <= 0.5; p50 = rank 5, one of 6 into (0.1, 0.5].
    h = Histogram(((0.1, 4.0), (0.5, 10.0), (float("inf"), 10.0)), total=2.0, count=10.0)
    assert h.quantile(0.5) == pytest.approx(0.1 + 0.4 * (1 / 6))
    assert h.quantile(0.0) == 0.0 and h.mean == 0.2
    assert Histogram(((float("inf"), 3.0),), 1.0, 3.0).quantile(0.9) == 0.0  # only +Inf: nothing finer known
    assert Histogram((), 0.0, 0.0).quantile(0.5) is None


def test_an_interval_only_counts_what_happened_in_it() -> None:
    first = parse(RECORDED.read_text(), taken_s=100.0)
    span = interval(first, first)
    assert span.generation_tokens_per_s == 0.0 and span.latency["ttft"].count == 0 and span.p("ttft", 0.5) is None


@pytest.mark.parametrize("text", ["<html>not metrics</html>", "vllm:x{le=\"0.1\" 1\n"])
def test_text_that_is_not_prometheus_is_refused(text: str) -> None:
    with pytest.raises(MetricsFormatError):
        parse(text)


def _server(text: str, health: int | None = 200) -> ServerEvidence:
    return ServerEvidence("http://h:1", health, ("m",), parse(text))


def test_preemptions_and_a_full_cache_are_findings_with_the_profiles_numbers() -> None:
    text = ("# TYPE vllm:num_preemptions_total counter\nvllm:num_preemptions_total 7\n"
            "# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc 0.99\n"
            "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 5\n")
    found = {f.category: f for f in server_findings(_server(text), {"max_num_seqs": 32})}
    assert set(found) == {"kv_cache_preemption", "kv_cache_full"}
    assert "lower max_num_seqs from 32 to 16 (`--set max_num_seqs=16`)" in found["kv_cache_preemption"].fix
    assert found["kv_cache_preemption"].evidence[0].quote == "vllm:num_preemptions_total = 7"


@pytest.mark.parametrize("health", [503, None])
def test_an_unhealthy_engine_is_an_error(health: int | None) -> None:
    [finding] = server_findings(_server("# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 0\n",
                                        health), {})
    assert (finding.category, finding.severity) == ("engine_dead", "error")


def _host(**changes: object) -> HostEvidence:
    from dataclasses import replace

    quiet = HostEvidence(cpu_count=2, load_1m=0.5, cpu_busy_percent=20.0, steal_percent=0.0, busiest=(),
                         ram_available_gib=20.0, ram_total_gib=24.0, swap_used_gib=0.0, gpu_error=None)
    return replace(quiet, **changes)  # type: ignore[arg-type]


def test_a_quiet_host_gives_no_finding() -> None:
    assert host_findings(_host(), vllm_pids=frozenset()) == []


def test_other_processes_on_a_busy_cpu_are_named_but_vllm_itself_is_not() -> None:
    busy = (BusyProcess(10, "VLLM::EngineCore", 100.0), BusyProcess(20, "ffmpeg", 95.0))
    [finding] = host_findings(_host(cpu_busy_percent=97.0, busiest=busy), vllm_pids=frozenset({10}))
    assert finding.category == "high_latency_cpu" and "pid 20 ffmpeg" in finding.evidence[1].quote
    assert "renice +10 -p 20" in finding.fix and "10 " not in finding.fix.split("-p")[1]
    assert host_findings(_host(cpu_busy_percent=97.0, busiest=busy[:1]), vllm_pids=frozenset({10})) == []


def test_steal_swap_and_strangers_on_the_gpu() -> None:
    host = _host(steal_percent=25.0, swap_used_gib=3.0, ram_available_gib=1.0,
                 gpu_processes=((1, "vllm", 20000.0), (2, "Xorg", 400.0)))
    found = [f.category for f in host_findings(host, vllm_pids=frozenset({1}))]
    assert found == ["high_latency_cpu", "host_memory_pressure", "insufficient_free_memory"]


def test_a_reading_of_more_series_than_a_server_writes_is_not_one() -> None:
    """A histogram (or counter) summed over hundreds of label sets is no vLLM server's reading (it has one per
    model, engine and reason): named invalid, not shown."""
    lines = ["# TYPE vllm:time_to_first_token_seconds histogram"]
    for i in range(300):
        lines += [f'vllm:time_to_first_token_seconds_bucket{{model_name="m{i}",le="1.0"}} 1',
                  f'vllm:time_to_first_token_seconds_bucket{{model_name="m{i}",le="+Inf"}} 1',
                  f'vllm:time_to_first_token_seconds_sum{{model_name="m{i}"}} 0.5',
                  f'vllm:time_to_first_token_seconds_count{{model_name="m{i}"}} 1']
    snapshot = parse("\n".join(lines) + "\n")
    assert not snapshot.histograms
    assert "more than 256 series" in next(iter(snapshot.invalid.values()))
