"""`qwenops status`: what a vLLM server is doing now, from two scrapes of its `/metrics` an interval apart.

Counters and histograms are cumulative since the server started, so rates and latency percentiles
are taken over the interval between the scrapes (as Prometheus' rate() and histogram_quantile() do):
"TTFT p99 over the last 2 s", not since boot.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from qwenops.errors import UnreachableError
from qwenops.troubleshoot.live import read_server, scrape_metrics
from qwenops.vllmmetrics import Snapshot, interval


@dataclass(frozen=True)
class ServerStatus:
    """The `data` of `qwenops status --json`. Latencies in seconds; None where nothing was measured."""

    base_url: str
    healthy: bool
    models: tuple[str, ...]
    uptime_s: float | None
    requests_running: float | None
    requests_waiting: float | None
    kv_cache_usage: float | None  # 0..1
    preemptions_total: float | None
    interval_s: float
    generation_tokens_per_s: float | None
    prompt_tokens_per_s: float | None
    requests_finished: float | None
    ttft_p50_s: float | None
    ttft_p99_s: float | None
    tpot_p50_s: float | None
    tpot_p99_s: float | None
    itl_p50_s: float | None


def read_status(base_url: str, *, interval_s: float = 2.0) -> ServerStatus:
    first = read_server(base_url)
    if first.metrics is None:
        raise UnreachableError(f"{base_url}/metrics cannot be read: {first.metrics_error}", field="--base-url",
                               hint="do not start vLLM with --disable-log-stats if you want metrics")
    time.sleep(interval_s)
    second = scrape_metrics(base_url)
    return status_between(base_url, first.metrics, second, healthy=first.health_status == 200, models=first.models)


def status_between(base_url: str, earlier: Snapshot, later: Snapshot, *, healthy: bool,
                   models: tuple[str, ...]) -> ServerStatus:
    """Pure: the status two snapshots show."""
    span = interval(earlier, later)
    started = later.gauges.get("process_start_time")
    return ServerStatus(
        base_url=base_url, healthy=healthy, models=models,
        uptime_s=later.taken_s - started if started else None,
        requests_running=later.gauges.get("requests_running"),
        requests_waiting=later.gauges.get("requests_waiting"),
        kv_cache_usage=later.gauges.get("kv_cache_usage"),
        preemptions_total=later.counters.get("preemptions"),
        interval_s=span.seconds,
        generation_tokens_per_s=span.generation_tokens_per_s,
        prompt_tokens_per_s=span.prompt_tokens_per_s,
        requests_finished=span.requests_finished,
        ttft_p50_s=span.p("ttft", 0.5), ttft_p99_s=span.p("ttft", 0.99),
        tpot_p50_s=span.p("tpot", 0.5), tpot_p99_s=span.p("tpot", 0.99),
        itl_p50_s=span.p("itl", 0.5),
    )
