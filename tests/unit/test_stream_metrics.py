"""The one stream measurement (qwenops.stream.metrics): a `TimedStream` received by tune's load and
troubleshoot's probes measures exactly as `stream_metrics` measures smoke-stream's recorded streams."""

from __future__ import annotations

import time

import pytest

from qwenops.stream.chunks import ChatDelta, Usage
from qwenops.stream.metrics import TimedStream, final_usage, stream_metrics

USAGE = Usage(prompt_tokens=7, completion_tokens=4, total_tokens=11)


def d(t: float, **kwargs: object) -> ChatDelta:
    return ChatDelta(arrived_s=t, id="c", model="m", **kwargs)  # type: ignore[arg-type]


ANSWER = [
    d(10.1, role="assistant"),
    d(10.3, content="The"),
    d(10.4, content=" sea"),
    d(10.6, content="."),
    d(10.7, content="", finish_reason="stop"),
    d(10.8, has_choice=False, usage=USAGE),
]


def test_a_timed_stream_measures_as_stream_metrics_does() -> None:
    stream = TimedStream(sent_s=10.0)
    for delta in ANSWER:
        stream.add(delta)
    assert stream.metrics() == stream_metrics(ANSWER, sent_s=10.0)
    m = stream.metrics()
    assert m.ttft_s == pytest.approx(0.3) and m.e2e_s == pytest.approx(0.7) and m.output_tokens == 4
    assert m.tpot_s == pytest.approx((0.7 - 0.3) / 3)


def test_usage_and_end_are_the_last_ones_received() -> None:
    stream = TimedStream(sent_s=10.0, deltas=list(ANSWER))
    assert stream.usage == USAGE == final_usage(ANSWER)
    assert stream.ended_s == 10.8  # the usage chunk arrived last: the answer was not over before it


def test_an_empty_stream_has_no_usage_no_end_and_counts_nothing() -> None:
    stream = TimedStream(sent_s=1.0)
    assert stream.usage is None and stream.ended_s is None
    m = stream.metrics()
    assert m.output_tokens == 0 and m.ttft_s is None and m.e2e_s is None and m.itl_s == ()


def test_without_usage_the_tokens_are_counted_in_the_chunks() -> None:
    deltas = ANSWER[:-1]
    assert final_usage(deltas) is None
    assert TimedStream(sent_s=10.0, deltas=deltas).metrics().output_tokens == 4


def test_a_timed_stream_is_sent_when_it_is_made_on_the_deltas_clock() -> None:
    before = time.perf_counter()
    stream = TimedStream()
    assert before <= stream.sent_s <= time.perf_counter()
