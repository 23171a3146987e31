"""`qwenops status`: what a vLLM server is doing now, from two scrapes of its `/metrics` an interval apart.

Counters and histograms are cumulative since the server started, so rates and latency percentiles
are taken over the interval between the scrapes (as Prometheus' rate() and histogram_quantile() do):
"TTFT p99 over the last 2 s", not since boot.

The server is not trusted: every value shown is a finite number in its range, or None with the reason
in `problems` (a value that is NaN, infinite, negative or impossible; a counter that went backwards; a
second scrape that failed). A server that is healthy and whose every value could be read is `ok`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qwenops.troubleshoot.live import MetricsUnreadable, ServerEvidence, read_server, scrape_metrics
from qwenops.vllmmetrics import HISTOGRAMS, Snapshot, interval

if TYPE_CHECKING:
    from qwenops.config.target import ConfiguredServer

# The longest latency taken as a fact: a histogram bound beyond a day is no server's measurement.
MAX_LATENCY_S = 86_400.0


@dataclass(frozen=True)
class ServerStatus:
    """The `data` of `qwenops status --json`. Latencies in seconds; None where nothing was measured or
    the server's value cannot be true (then `problems` says why)."""

    base_url: str  # credentials masked
    healthy: bool  # /health answered 200
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
    health: str = "ok"  # what /health answered, in words
    problems: tuple[str, ...] = ()  # why the server is not ok, and why each value shown as n/a is missing
    ok: bool = True  # healthy, and nothing in problems


def read_status(server: ConfiguredServer | str, *, interval_s: float = 2.0,
                deadline_s: float | None = None) -> ServerStatus:
    """Two scrapes INTERVAL_S apart. Exit 3 when nothing answers (in time, or within the caps), 2 when the
    URL is not a vLLM server; otherwise a ServerStatus, `ok` or with its problems."""
    first = read_server(server, deadline_s=deadline_s)
    problems = list(_answer_problems(first))
    if first.metrics is None:
        problems.append(f"/metrics {first.metrics_error}")
        return _without_metrics(first, problems)
    if not first.metrics.is_vllm:
        problems.append("/metrics has no vllm: series (was the server started with --disable-log-stats?)")
    time.sleep(interval_s)
    later: Snapshot | None
    try:
        later = scrape_metrics(server, deadline_s=deadline_s)
    except MetricsUnreadable as exc:
        later = None
        problems.append(f"the second scrape: {exc.message}")
    return status_between(first.base_url, first.metrics, later, healthy=first.health_status == 200,
                          models=first.models, health=_health(first), problems=problems,
                          interval_s=interval_s)


def _health(server: ServerEvidence) -> str:
    answer = server.answer("/health")
    if server.health_status == 200:
        return "ok"
    return answer.what if answer is not None else "no answer"


def _answer_problems(server: ServerEvidence) -> list[str]:
    """What the answers to /health and /v1/models say is wrong (/metrics is judged by its reader)."""
    problems: list[str] = []
    for answer in server.answers:
        if answer.path == "/metrics" or (answer.status == 200 and not answer.html):
            continue
        if answer.status in (401, 403):
            problems.append(f"{answer.path} answered {answer.what}: {_auth_words(answer.status, server)}")
        elif answer.redirect or answer.html:
            problems.append(f"{answer.path} answered {answer.what}: something in front of the server (a login "
                            f"proxy or another web server) answered, not vLLM")
        elif answer.path == "/health":
            problems.append(f"/health answered {answer.what}" if answer.status is not None else answer.what)
        else:
            problems.append(f"{answer.path} answered {answer.what}")
    return problems


def _auth_words(status: int | None, server: ServerEvidence) -> str:
    from qwenops.troubleshoot.live import auth_fix

    return auth_fix(status or 401, server.key_state, server.key_sent)


def _without_metrics(first: ServerEvidence, problems: list[str]) -> ServerStatus:
    return ServerStatus(base_url=first.base_url, healthy=first.health_status == 200, models=first.models,
                        uptime_s=None, requests_running=None, requests_waiting=None, kv_cache_usage=None,
                        preemptions_total=None, interval_s=0.0, generation_tokens_per_s=None,
                        prompt_tokens_per_s=None, requests_finished=None, ttft_p50_s=None, ttft_p99_s=None,
                        tpot_p50_s=None, tpot_p99_s=None, itl_p50_s=None, health=_health(first),
                        problems=tuple(problems), ok=False)


def status_between(base_url: str, earlier: Snapshot, later: Snapshot | None, *, healthy: bool,
                   models: tuple[str, ...], health: str = "ok", problems: list[str] | tuple[str, ...] = (),
                   interval_s: float = 0.0) -> ServerStatus:
    """Pure: the status two snapshots show (LATER None: the second scrape failed; no rates then)."""
    found = list(problems)
    newest = later if later is not None else earlier
    for snapshot in (earlier, later) if later is not None else (earlier,):
        for reading, why in snapshot.invalid.items():
            text = f"{_reading_name(reading)}: {why}"
            if text not in found:
                found.append(text)
    started = newest.gauges.get("process_start_time")
    uptime = newest.taken_s - started if started is not None else None
    if uptime is not None and uptime < 0:
        found.append(f"uptime: process_start_time_seconds is {-uptime:.0f} s after this scrape (the server's "
                     f"clock is ahead of this machine's, or the value is wrong)")
        uptime = None
    if later is None:
        rates: dict[str, float | None] = dict.fromkeys(("gen", "prompt", "finished", "ttft50", "ttft99", "tpot50",
                                                         "tpot99", "itl50"))
        seconds = interval_s
    else:
        span = interval(earlier, later)
        found += [why for why in span.notes.values() if why not in found]
        seconds = span.seconds if math.isfinite(span.seconds) else interval_s
        rates = {"gen": span.generation_tokens_per_s, "prompt": span.prompt_tokens_per_s,
                 "finished": span.requests_finished,
                 "ttft50": _latency(span.p("ttft", 0.5), found), "ttft99": _latency(span.p("ttft", 0.99), found),
                 "tpot50": _latency(span.p("tpot", 0.5), found), "tpot99": _latency(span.p("tpot", 0.99), found),
                 "itl50": _latency(span.p("itl", 0.5), found)}
    return ServerStatus(
        base_url=base_url, healthy=healthy, models=models, uptime_s=uptime,
        requests_running=newest.gauges.get("requests_running"),
        requests_waiting=newest.gauges.get("requests_waiting"),
        kv_cache_usage=newest.gauges.get("kv_cache_usage"),
        preemptions_total=newest.counters.get("preemptions"),
        interval_s=seconds,
        generation_tokens_per_s=rates["gen"], prompt_tokens_per_s=rates["prompt"],
        requests_finished=rates["finished"],
        ttft_p50_s=rates["ttft50"], ttft_p99_s=rates["ttft99"],
        tpot_p50_s=rates["tpot50"], tpot_p99_s=rates["tpot99"], itl_p50_s=rates["itl50"],
        health=health, problems=tuple(found), ok=healthy and not found,
    )


def _latency(value: float | None, problems: list[str]) -> float | None:
    if value is None or (math.isfinite(value) and 0 <= value <= MAX_LATENCY_S):
        return value
    why = f"a latency of {value:g} s from a histogram's bounds is not a measurement"
    if why not in problems:
        problems.append(why)
    return None


def _reading_name(reading: str) -> str:
    """The metric a reading comes from, as the server names it (for a problem's first words)."""
    if reading in HISTOGRAMS:
        return HISTOGRAMS[reading][0]
    return reading.replace("_", " ")


# ------------------------------------------------------------------------------------------ trends

# `status --watch` keeps this many intervals (with --interval 2, the last minute).
TREND_POINTS = 30
# Eight heights: Unicode's lower blocks, or ASCII where the terminal cannot show them. A gap (a value
# that was n/a: unreadable or not to be trusted) is a space in both, never the lowest height (zero).
BLOCKS = "▁▂▃▄▅▆▇█"
ASCII_BLOCKS = "_.:-=+*#"


@dataclass(frozen=True)
class TrendSeries:
    """One series of the window, oldest first: None where that interval's value was n/a."""

    name: str
    unit: str
    values: tuple[float | None, ...]
    ceiling: float | None = None  # a fixed top of the scale (KV usage: 1.0); else the window's largest

    @property
    def latest(self) -> float | None:
        return self.values[-1] if self.values else None


class Trend:
    """The last TREND_POINTS statuses of a watch: tokens/s, KV cache usage and requests waiting."""

    def __init__(self, points: int = TREND_POINTS) -> None:
        from collections import deque

        self._window: deque[ServerStatus] = deque(maxlen=points)

    def add(self, status: ServerStatus) -> None:
        self._window.append(status)

    def __len__(self) -> int:
        return len(self._window)

    def series(self) -> list[TrendSeries]:
        window = tuple(self._window)
        return [
            TrendSeries("tokens/s", "tokens/s out", tuple(s.generation_tokens_per_s for s in window)),
            TrendSeries("KV cache", "used", tuple(s.kv_cache_usage for s in window), ceiling=1.0),
            TrendSeries("waiting", "requests waiting", tuple(s.requests_waiting for s in window)),
        ]


def sparkline(values: tuple[float | None, ...] | list[float | None], *, ceiling: float | None = None,
              ascii_only: bool = False) -> str:
    """VALUES as one character each, scaled from 0 to CEILING (else the largest value); None is a gap.

    Values are never negative here (status() has refused those), so the scale starts at 0: a flat 0 is
    the lowest block, and a constant non-zero value is the highest."""
    levels = ASCII_BLOCKS if ascii_only else BLOCKS
    known = [v for v in values if v is not None and math.isfinite(v)]
    top = ceiling if ceiling is not None else max(known, default=0.0)
    out = []
    for value in values:
        if value is None or not math.isfinite(value):
            out.append(" ")
        elif top <= 0:
            out.append(levels[0])
        else:
            share = min(max(value / top, 0.0), 1.0)
            out.append(levels[min(len(levels) - 1, int(share * (len(levels) - 1) + 0.5))])
    return "".join(out)


def can_draw_blocks(encoding: str | None) -> bool:
    """Whether a stream in ENCODING can show the Unicode blocks (an ASCII or Latin-1 terminal cannot)."""
    if not encoding:
        return False
    try:
        BLOCKS.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True
