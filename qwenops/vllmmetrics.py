"""vLLM's Prometheus `/metrics`, read into what an operator asks: how busy, how full, how fast.

Parsed with prometheus_client's own text parser. Names differ across vLLM versions, so each reading
lists the names it has had (`vllm:kv_cache_usage_perc` since V1, `vllm:gpu_cache_usage_perc` before;
`vllm:num_preemptions_total` vs `vllm:num_preemptions`). Latencies over an interval come from the
change of a histogram's buckets between two scrapes, as Prometheus' `histogram_quantile(rate(...))`
computes them: linear interpolation inside the bucket the quantile falls in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

# Reading -> the metric names it has had, newest first (a server exposes one of them).
GAUGES: Mapping[str, tuple[str, ...]] = {
    "requests_running": ("vllm:num_requests_running",),
    "requests_waiting": ("vllm:num_requests_waiting",),
    "kv_cache_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    "process_start_time": ("process_start_time_seconds",),
}
COUNTERS: Mapping[str, tuple[str, ...]] = {
    "preemptions": ("vllm:num_preemptions", "vllm:num_preemptions_total"),
    "generation_tokens": ("vllm:generation_tokens",),
    "prompt_tokens": ("vllm:prompt_tokens",),
    "requests_finished": ("vllm:request_success",),
}
HISTOGRAMS: Mapping[str, tuple[str, ...]] = {
    "ttft": ("vllm:time_to_first_token_seconds",),
    "itl": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
    "tpot": ("vllm:request_time_per_output_token_seconds", "vllm:time_per_output_token_seconds"),
    "e2e": ("vllm:e2e_request_latency_seconds",),
    "queue": ("vllm:request_queue_time_seconds",),
}


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts by upper bound (the last bound is +Inf), with their sum and count."""

    buckets: tuple[tuple[float, float], ...]
    total: float
    count: float

    def minus(self, earlier: Histogram) -> Histogram:
        before = dict(earlier.buckets)
        return Histogram(tuple((le, n - before.get(le, 0.0)) for le, n in self.buckets),
                         self.total - earlier.total, self.count - earlier.count)

    def quantile(self, q: float) -> float | None:
        """Prometheus' histogram_quantile: None without observations."""
        if self.count <= 0 or not self.buckets:
            return None
        rank = q * self.count
        lower_bound, lower_count = 0.0, 0.0
        for upper, cumulative in self.buckets:
            if cumulative >= rank:
                if math.isinf(upper):
                    return lower_bound  # the highest finite bound is all that is known
                inside = cumulative - lower_count
                share = (rank - lower_count) / inside if inside > 0 else 1.0
                return lower_bound + (upper - lower_bound) * share
            lower_bound, lower_count = upper, cumulative
        return lower_bound

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count > 0 else None


@dataclass(frozen=True)
class Snapshot:
    """One scrape of /metrics, summed over every label set (one model, one engine on one box)."""

    taken_s: float  # time.time() of the scrape
    gauges: dict[str, float] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, Histogram] = field(default_factory=dict)
    names: frozenset[str] = frozenset()  # every family the server exposed

    @property
    def is_vllm(self) -> bool:
        return any(name.startswith("vllm:") for name in self.names)


class MetricsFormatError(ValueError):
    """The text is not Prometheus' exposition format."""


def parse(text: str, *, taken_s: float | None = None) -> Snapshot:
    """Parse /metrics text; raise MetricsFormatError for text prometheus_client cannot read."""
    from prometheus_client.parser import text_string_to_metric_families

    families: dict[str, Metric] = {}
    try:
        for parsed in text_string_to_metric_families(text):
            families[parsed.name] = parsed
    except (ValueError, IndexError, TypeError) as exc:  # the parser's ways of refusing a line
        raise MetricsFormatError(str(exc) or type(exc).__name__) from None

    def first(names: Sequence[str]) -> Metric | None:
        return next((families[n] for n in names if n in families and families[n].samples), None)

    gauges: dict[str, float] = {}
    for reading, names in GAUGES.items():
        family = first(names)
        if family is not None:
            gauges[reading] = sum(s.value for s in family.samples if s.name == family.name)
    counters: dict[str, float] = {}
    for reading, names in COUNTERS.items():
        family = first(names)
        if family is not None:
            counters[reading] = sum(s.value for s in family.samples
                                    if s.name in (family.name, family.name + "_total"))
    histograms: dict[str, Histogram] = {}
    for reading, names in HISTOGRAMS.items():
        family = first(names)
        if family is not None:
            histograms[reading] = _histogram(family)
    return Snapshot(time.time() if taken_s is None else taken_s, gauges, counters, histograms, frozenset(families))


def _histogram(family: Metric) -> Histogram:
    name = family.name
    buckets: dict[float, float] = {}
    total = count = 0.0
    for sample in family.samples:
        if sample.name == name + "_bucket":
            bound = float(sample.labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + sample.value
        elif sample.name == name + "_sum":
            total += sample.value
        elif sample.name == name + "_count":
            count += sample.value
    return Histogram(tuple(sorted(buckets.items())), total, count)


@dataclass(frozen=True)
class Interval:
    """What happened between two scrapes."""

    seconds: float
    generation_tokens_per_s: float | None
    prompt_tokens_per_s: float | None
    requests_finished: float | None
    preemptions: float | None
    latency: dict[str, Histogram]  # observations made in the interval only

    def p(self, reading: str, q: float) -> float | None:
        histogram = self.latency.get(reading)
        return histogram.quantile(q) if histogram is not None else None


def interval(earlier: Snapshot, later: Snapshot) -> Interval:
    seconds = max(later.taken_s - earlier.taken_s, 1e-9)

    def delta(reading: str) -> float | None:
        if reading not in later.counters or reading not in earlier.counters:
            return None
        return max(later.counters[reading] - earlier.counters[reading], 0.0)  # a restart resets counters

    tokens, prompts = delta("generation_tokens"), delta("prompt_tokens")
    latency = {name: later.histograms[name].minus(earlier.histograms[name])
               for name in later.histograms if name in earlier.histograms}
    return Interval(seconds, tokens / seconds if tokens is not None else None,
                    prompts / seconds if prompts is not None else None, delta("requests_finished"),
                    delta("preemptions"), latency)
