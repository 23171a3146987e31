"""vLLM's Prometheus `/metrics`, read into what an operator asks: how busy, how full, how fast.

Parsed with prometheus_client's own text parser. Names differ across vLLM versions, so each reading
lists the names it has had (`vllm:kv_cache_usage_perc` since V1, `vllm:gpu_cache_usage_perc` before;
`vllm:num_preemptions_total` vs `vllm:num_preemptions`). Latencies over an interval come from the
change of a histogram's buckets between two scrapes, as Prometheus' `histogram_quantile(rate(...))`
computes them: linear interpolation inside the bucket the quantile falls in.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from qwenops import untrusted

if TYPE_CHECKING:
    from prometheus_client.samples import Sample

# Reading -> the metric names it has had, newest first (a server exposes one of them).
GAUGES: Mapping[str, tuple[str, ...]] = {
    "requests_running": ("vllm:num_requests_running",),
    "requests_waiting": ("vllm:num_requests_waiting",),
    "kv_cache_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    "process_start_time": ("process_start_time_seconds",),
}
# A counter written without its `# TYPE` line is a family of its own under its _total name.
COUNTERS: Mapping[str, tuple[str, ...]] = {
    "preemptions": ("vllm:num_preemptions", "vllm:num_preemptions_total"),
    "generation_tokens": ("vllm:generation_tokens", "vllm:generation_tokens_total"),
    "prompt_tokens": ("vllm:prompt_tokens", "vllm:prompt_tokens_total"),
    "requests_finished": ("vllm:request_success", "vllm:request_success_total"),
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
    """One scrape of /metrics, summed over every label set (one model, one engine on one box).

    Only values that can be true are kept: a reading whose samples are NaN, infinite, negative, beyond
    `untrusted.MAX_METRIC_VALUE`, out of its range (KV cache use above 1), repeated, or (histograms)
    without `le`, with an `le` that is not a number, not cumulative or without `+Inf` is left out and
    named in `invalid` with the reason, so nobody prints it as a fact."""

    taken_s: float  # time.time() of the scrape
    gauges: dict[str, float] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, Histogram] = field(default_factory=dict)
    names: frozenset[str] = frozenset()  # every family the server exposed
    invalid: dict[str, str] = field(default_factory=dict)  # reading -> why its value cannot be trusted
    series: dict[str, frozenset[str]] = field(default_factory=dict)  # counter reading -> its label sets

    @property
    def is_vllm(self) -> bool:
        return any(name.startswith("vllm:") for name in self.names)


class MetricsFormatError(ValueError):
    """The text is not Prometheus' exposition format."""


class MetricsTooLarge(MetricsFormatError):
    """More samples than `untrusted.MAX_METRICS_SAMPLES`: not a vLLM server's page."""


_SAMPLE_LINE = re.compile(r"^[ \t]*[^#\s]", re.MULTILINE)

# How the series of one gauge add up: counts add, the fullest cache and the oldest start are the reading.
_COMBINE: Mapping[str, Callable[[list[float]], float]] = {
    "kv_cache_usage": max, "process_start_time": min,
}
_RANGE: Mapping[str, tuple[float, float]] = {"kv_cache_usage": (0.0, 1.0)}


def count_samples(text: str) -> int:
    """Sample lines (not blank, not a # comment), counted without building a list of lines."""
    if text.count("\n") < untrusted.MAX_METRICS_SAMPLES:
        return text.count("\n") + 1
    return sum(1 for _ in _SAMPLE_LINE.finditer(text))


def _check_lines(text: str) -> None:
    """MetricsTooLarge for a line of more than MAX_METRICS_LINE_CHARS, so that what the third-party parser
    is given is bounded in shape, not only in bytes: its label parser costs the square of a line's labels."""
    cap = untrusted.MAX_METRICS_LINE_CHARS
    if len(text) > cap and max(map(len, text.split("\n"))) > cap:
        raise MetricsTooLarge(f"a line of more than {cap:,} characters (vLLM's are a few hundred)")


def parse(text: str | bytes, *, taken_s: float | None = None) -> Snapshot:
    """Parse /metrics text; MetricsFormatError for text prometheus_client cannot read, MetricsTooLarge
    for more than MAX_METRICS_SAMPLES samples (counted before parsing, so a million of them cost nothing)."""
    from prometheus_client.parser import text_string_to_metric_families

    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")  # a name with a bad byte is no name of ours; a value fails
    if count_samples(text) > untrusted.MAX_METRICS_SAMPLES:
        raise MetricsTooLarge(f"more than {untrusted.MAX_METRICS_SAMPLES:,} samples (a vLLM server has about 600)")
    _check_lines(text)
    families: dict[str, list[Sample]] = {}
    try:
        for parsed in text_string_to_metric_families(text):
            families.setdefault(parsed.name, []).extend(parsed.samples)  # a family written twice is merged
    except Exception as exc:  # a third-party parser of hostile text: every refusal is bad text, never a bug here
        raise MetricsFormatError(_one_line(str(exc)[:1000]) or type(exc).__name__) from None

    def first(names: Sequence[str]) -> tuple[str, list[Sample]] | None:
        return next(((n, families[n]) for n in names if families.get(n)), None)

    gauges: dict[str, float] = {}
    counters: dict[str, float] = {}
    series: dict[str, frozenset[str]] = {}
    histograms: dict[str, Histogram] = {}
    invalid: dict[str, str] = {}
    for reading, names in GAUGES.items():
        found = first(names)
        if found is not None:
            _gauge(reading, *found, gauges, invalid)
    for reading, names in COUNTERS.items():
        found = first(names)
        if found is not None:
            name, samples = found
            kept = [s for s in samples if s.name in (name, name + "_total")]
            value = _series(name, kept, invalid, reading)
            if value is not None:
                counters[reading] = math.fsum(value)
                series[reading] = frozenset(map(_labels, kept))
    for reading, names in HISTOGRAMS.items():
        found = first(names)
        if found is not None:
            try:
                histograms[reading] = _histogram(*found)
            except ValueError as exc:
                invalid[reading] = str(exc)
    return Snapshot(time.time() if taken_s is None else taken_s, gauges, counters, histograms,
                    frozenset(families), invalid, series)


def _gauge(reading: str, name: str, samples: list[Sample], gauges: dict[str, float],
           invalid: dict[str, str]) -> None:
    value = _series(name, [s for s in samples if s.name == name], invalid, reading)
    if value is None:
        return
    combined = _COMBINE.get(reading, math.fsum)(value)
    low, high = _RANGE.get(reading, (0.0, untrusted.MAX_METRIC_VALUE))
    if low <= combined <= high:
        gauges[reading] = combined
    else:
        invalid[reading] = f"{name} = {combined:g}, outside {low:g}..{high:g}"


def _labels(sample: Sample, *, less: str = "") -> str:
    return ",".join(f"{k}={v!r}" for k, v in sorted(sample.labels.items()) if k != less)


def _shown(value: float) -> str:
    return f"{value:g}"


def _checked(name: str, value: float) -> str | None:
    """Why VALUE cannot be a count, a time or a share, or None."""
    if math.isnan(value) or math.isinf(value):
        return f"{name} = {_shown(value)}, not a number"
    if value < 0:
        return f"{name} = {_shown(value)}, negative"
    if value > untrusted.MAX_METRIC_VALUE:
        return f"{name} = {_shown(value)}, beyond any real server"
    return None


def _series(name: str, samples: list[Sample], invalid: dict[str, str], reading: str) -> list[float] | None:
    """The values of one gauge or counter, one per label set; None (and why, in INVALID) if one is bad."""
    if len(samples) > untrusted.MAX_METRIC_SERIES:
        invalid[reading] = (f"{name} has {len(samples):,} series, more than {untrusted.MAX_METRIC_SERIES} "
                            "(vLLM writes one per model, engine and reason)")
        return None
    seen: set[str] = set()
    values: list[float] = []
    for sample in samples:
        labels = _labels(sample)
        if labels in seen:
            invalid[reading] = f"{name} repeats the series {{{_one_line(labels, 80)}}}"
            return None
        seen.add(labels)
        why = _checked(name, float(sample.value))
        if why is not None:
            invalid[reading] = why
            return None
        values.append(float(sample.value))
    return values


def _histogram(name: str, samples: list[Sample]) -> Histogram:
    """One histogram summed over its label sets; ValueError (one line) for buckets no server can mean."""
    series: dict[str, dict[float, float]] = {}
    totals: dict[str, float] = {}
    counts: dict[str, float] = {}
    for sample in samples:
        value = float(sample.value)
        kind = sample.name[len(name):] if sample.name.startswith(name) else ""
        if kind not in ("_bucket", "_sum", "_count"):
            continue
        why = _checked(sample.name, value)
        if why is not None:
            raise ValueError(why)
        labels = _labels(sample, less="le")
        if kind == "_bucket":
            bound = _bound(name, sample)
            if labels not in series and len(series) == untrusted.MAX_METRIC_SERIES:
                raise ValueError(f"{name} has more than {untrusted.MAX_METRIC_SERIES} series (vLLM writes one per "
                                 "model and engine)")
            buckets = series.setdefault(labels, {})
            if bound in buckets:
                raise ValueError(f"{name} repeats the bucket le={sample.labels['le']!r}")
            buckets[bound] = value
        else:
            into = totals if kind == "_sum" else counts
            if labels in into:
                raise ValueError(f"{name}{kind} repeats the series {{{_one_line(labels, 80)}}}")
            into[labels] = value
    return _merged(name, series, totals, counts)


def _bound(name: str, sample: Sample) -> float:
    if "le" not in sample.labels:
        raise ValueError(f"a bucket of {name} has no le label")
    raw = sample.labels["le"]
    try:
        bound = float(raw)
    except ValueError:
        bound = math.nan
    if math.isnan(bound):
        raise ValueError(f"a bucket of {name} has le={_one_line(raw, 40)!r}, not a number")
    return bound


def _merged(name: str, series: dict[str, dict[float, float]], totals: dict[str, float],
            counts: dict[str, float]) -> Histogram:
    """Each label set's buckets checked (cumulative, +Inf, = _count), then added bound by bound."""
    bounds: tuple[float, ...] | None = None
    merged: dict[float, float] = {}
    for labels, buckets in series.items():
        ordered = sorted(buckets.items())
        if not ordered or not math.isinf(ordered[-1][0]):
            raise ValueError(f"{name} has no +Inf bucket")
        if any(later < earlier for (_, earlier), (_, later) in itertools.pairwise(ordered)):
            raise ValueError(f"{name}'s buckets are not cumulative (a count falls as le rises)")
        count = counts.get(labels)
        if count is not None and abs(count - ordered[-1][1]) > 1e-6 * max(count, 1.0):
            raise ValueError(f"{name}_count = {count:g} but its +Inf bucket = {ordered[-1][1]:g}")
        these = tuple(bound for bound, _ in ordered)
        if bounds is not None and these != bounds:
            raise ValueError(f"{name}'s label sets have different buckets")
        bounds = these
        for bound, value in ordered:
            merged[bound] = merged.get(bound, 0.0) + value
    if not merged and counts and math.fsum(counts.values()) > 0:
        raise ValueError(f"{name} counts observations but has no buckets")
    return Histogram(tuple(sorted(merged.items())), math.fsum(totals.values()), math.fsum(counts.values()))


def _one_line(text: str, limit: int = 160) -> str:
    one = " ".join(untrusted.printable(text, keep_newlines=False).split())
    return one if len(one) <= limit else one[: limit - 1] + "…"


@dataclass(frozen=True)
class Interval:
    """What happened between two scrapes."""

    seconds: float
    generation_tokens_per_s: float | None
    prompt_tokens_per_s: float | None
    requests_finished: float | None
    preemptions: float | None
    latency: dict[str, Histogram]  # observations made in the interval only
    notes: dict[str, str] = field(default_factory=dict)  # reading -> why it has no value over the interval

    def p(self, reading: str, q: float) -> float | None:
        histogram = self.latency.get(reading)
        return histogram.quantile(q) if histogram is not None else None


def interval(earlier: Snapshot, later: Snapshot) -> Interval:
    """Rates and latency between two scrapes. A counter or histogram that went backwards (the server
    restarted between them, or lies) has no value, and `notes` says so: a reset is not zero work."""
    seconds = later.taken_s - earlier.taken_s
    notes: dict[str, str] = {}
    if seconds < 0 or math.isnan(seconds):
        notes["interval"] = "this machine's clock went backwards between the scrapes"
        seconds = math.nan
    else:
        seconds = max(seconds, 1e-9)

    def delta(reading: str) -> float | None:
        if reading not in later.counters or reading not in earlier.counters:
            return None
        if earlier.series.get(reading) != later.series.get(reading):
            # vLLM creates every series of a counter at start-up: one that came or went between the scrapes is
            # another server (or a restart), and a difference of two sums over different series is no count.
            notes[reading] = (f"the server's {reading.replace('_', ' ')} series changed between the scrapes: it "
                              "restarted, or another server answered")
            return None
        change = later.counters[reading] - earlier.counters[reading]
        if change < 0:
            notes[reading] = (f"{reading.replace('_', ' ')} went down from {earlier.counters[reading]:g} to "
                              f"{later.counters[reading]:g}: the server restarted between the scrapes")
            return None
        return change

    def rate(change: float | None) -> float | None:
        return change / seconds if change is not None and seconds > 0 else None

    tokens, prompts = delta("generation_tokens"), delta("prompt_tokens")
    latency: dict[str, Histogram] = {}
    for name in later.histograms:
        if name not in earlier.histograms:
            continue
        now, before = later.histograms[name], earlier.histograms[name]
        if tuple(b for b, _ in now.buckets) != tuple(b for b, _ in before.buckets):
            notes[name] = f"the {name} histogram's buckets changed between the scrapes"
            continue
        change = now.minus(before)
        if change.count < 0 or any(n < 0 for _, n in change.buckets):
            notes[name] = f"the {name} histogram went backwards: the server restarted between the scrapes"
            continue
        latency[name] = change
    return Interval(seconds, rate(tokens), rate(prompts), delta("requests_finished"), delta("preemptions"),
                    latency, notes)
