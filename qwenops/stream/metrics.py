"""Latency metrics of streamed answers, with the formulas `vllm bench serve` uses (README "Streaming").

All times are seconds on one monotonic clock (`time.perf_counter()`), taken when the request is sent
and when the bytes that complete each chunk arrive (`ChatDelta.arrived_s`).

    first_chunk_s      = first chunk of any kind          - sent
    first_reasoning_s  = first non-empty reasoning chunk  - sent          (None: the model did not reason)
    ttft_s             = first non-empty content chunk    - sent          (None: no content)
    e2e_s              = last token chunk                 - sent
    itl_s              = [t[i] - t[i-1] for the arrival times t of consecutive token chunks]
    first_token        = first non-empty content or reasoning chunk       (the earlier of the two above)
    tpot_s             = (e2e_s - first_token) / (output_tokens - 1)      (None when output_tokens < 2)
    output_tokens      = usage.completion_tokens, else the tokens counted in the chunks (ChatDelta.tokens)
    output_tokens_per_s = output_tokens / e2e_s            (aggregate: all tokens / wall time of the run)

A token chunk is any chunk with a choice except the opening role announcement (`ChatDelta.is_token`):
vLLM sends one per generated token, the stop token included. The trailing usage chunk and `[DONE]` are
not tokens, so they do not move `e2e_s` — as in vLLM's benchmark, where the request ends at the last
chunk with choices. Percentiles interpolate linearly between ranks, like `numpy.percentile` in vLLM's bench.

A resumed stream (`resume=Resume()`) has one choice-less delta with `resumed` set where it continued:
not a token, so it moves nothing. The gap across it (the cut, the restart, the re-request) is not an
inter-token latency: `itl_s` leaves out the one gap that spans a resumed delta (`Resumed.gap_ms` reports
it); `e2e_s`, `tpot_s` and the rates keep it, since the caller waited that long for the answer.

This is the one place a stream's timed deltas become numbers: smoke-stream measures its recorded
streams with `stream_metrics`; tune's load and troubleshoot's probes receive into a `TimedStream`, which
keeps the send time and the deltas and measures them the same way.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from qwenops.stream.chunks import ChatDelta, Usage


class Percentiles(BaseModel):
    model_config = ConfigDict(frozen=True)

    p50: float | None = None
    p90: float | None = None
    p99: float | None = None

    @classmethod
    def of(cls, values: Sequence[float]) -> Percentiles:
        return cls(p50=percentile(values, 50), p90=percentile(values, 90), p99=percentile(values, 99))


class StreamMetrics(BaseModel):
    """One stream's latencies (seconds) and output size."""

    model_config = ConfigDict(frozen=True)

    first_chunk_s: float | None
    first_reasoning_s: float | None
    ttft_s: float | None
    e2e_s: float | None
    tpot_s: float | None
    itl_s: tuple[float, ...]
    output_tokens: int
    output_tokens_per_s: float | None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile with linear interpolation (numpy's default); None for no values."""
    if not values:
        return None
    if len(values) == 1:
        return float(values[0])
    cut = statistics.quantiles(values, n=1000, method="inclusive")
    return cut[round(q * 10) - 1] if 0 < q < 100 else float(max(values) if q >= 100 else min(values))


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _spans_resume(before: float, after: float, resumed_at: Sequence[float]) -> bool:
    """Whether a resumed delta arrived between two token chunks (it arrives with the continuation's first
    token, so at `after` itself)."""
    return any(before < at <= after for at in resumed_at)


def final_usage(deltas: Sequence[ChatDelta]) -> Usage | None:
    """The server's own count (the last usage chunk); None when the stream had none."""
    return next((d.usage for d in reversed(deltas) if d.usage is not None), None)


def stream_metrics(deltas: Sequence[ChatDelta], *, sent_s: float) -> StreamMetrics:
    """Metrics of one stream from its deltas (in arrival order) and the time its request was sent."""
    first_chunk = deltas[0].arrived_s if deltas else None
    first_reasoning = next((d.arrived_s for d in deltas if d.reasoning_content), None)
    first_content = next((d.arrived_s for d in deltas if d.content), None)
    token_times = [d.arrived_s for d in deltas if d.is_token]
    resumed_at = [d.arrived_s for d in deltas if d.resumed is not None]
    usage = final_usage(deltas)
    output_tokens = usage.completion_tokens if usage is not None else sum(d.tokens for d in deltas)

    # output_tokens counts reasoning tokens too, so TPOT must start at the first token of either kind:
    # from the first content it would spread the answer's time over the thinking tokens as well.
    first_token = next((d.arrived_s for d in deltas if d.content or d.reasoning_content), None)

    ttft = None if first_content is None else first_content - sent_s
    e2e = token_times[-1] - sent_s if token_times else None
    tpot = None
    if first_token is not None and e2e is not None and output_tokens > 1:
        tpot = (e2e - (first_token - sent_s)) / (output_tokens - 1)
    itl = tuple(b - a for a, b in itertools.pairwise(token_times) if not _spans_resume(a, b, resumed_at))
    return StreamMetrics(
        first_chunk_s=None if first_chunk is None else first_chunk - sent_s,
        first_reasoning_s=None if first_reasoning is None else first_reasoning - sent_s,
        ttft_s=ttft,
        e2e_s=e2e,
        tpot_s=tpot,
        itl_s=itl,
        output_tokens=output_tokens,
        output_tokens_per_s=output_tokens / e2e if e2e else None,
    )


@dataclass
class TimedStream:
    """A stream as it is received: when its request was sent (by default, when this is made: just before
    the request) and its deltas in arrival order, measured by `stream_metrics`."""

    sent_s: float = field(default_factory=time.perf_counter)
    deltas: list[ChatDelta] = field(default_factory=list)

    def add(self, delta: ChatDelta) -> None:
        self.deltas.append(delta)

    def metrics(self) -> StreamMetrics:
        return stream_metrics(self.deltas, sent_s=self.sent_s)

    @property
    def usage(self) -> Usage | None:
        return final_usage(self.deltas)

    @property
    def ended_s(self) -> float | None:
        """When the last delta arrived (the usage chunk counts: the answer was not over before it)."""
        return self.deltas[-1].arrived_s if self.deltas else None
