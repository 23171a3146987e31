"""Metric formulas on hand-timed deltas (docs/streaming.md publishes the same formulas)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qwenops.stream.chunks import ChatDelta, Usage
from qwenops.stream.metrics import Percentiles, percentile, stream_metrics


def d(t: float, **kwargs: object) -> ChatDelta:
    return ChatDelta(arrived_s=t, id="c", model="m", **kwargs)  # type: ignore[arg-type]


def test_formulas_on_a_stream_with_reasoning_then_content() -> None:
    sent = 100.0
    deltas = [
        d(100.2, role="assistant"),  # the role announcement: a chunk, not a token
        d(100.3, reasoning_content="hmm"),
        d(100.5, content=""),  # a token without text (a special token)
        d(100.6, content="Hi"),
        d(101.0, content="!"),
        d(101.2, content="", finish_reason="stop"),
        d(101.3, has_choice=False, usage=Usage(prompt_tokens=3, completion_tokens=5, total_tokens=8)),
    ]
    m = stream_metrics(deltas, sent_s=sent)
    assert m.first_chunk_s == pytest.approx(0.2)
    assert m.first_reasoning_s == pytest.approx(0.3)
    assert m.ttft_s == pytest.approx(0.6)
    assert m.e2e_s == pytest.approx(1.2)  # the usage chunk does not end the answer
    assert m.output_tokens == 5  # usage wins over counting
    # all 5 tokens (reasoning included) are spread from the first token on, not from the first content
    assert m.tpot_s == pytest.approx((1.2 - 0.3) / 4)
    assert m.itl_s == pytest.approx((0.2, 0.1, 0.4, 0.2))
    assert m.output_tokens_per_s == pytest.approx(5 / 1.2)


def test_tpot_of_a_reasoning_only_answer_is_measured() -> None:
    deltas = [
        d(10.0, role="assistant"),
        d(10.5, reasoning_content="a"),
        d(11.5, reasoning_content="b"),
        d(12.5, content="", finish_reason="length"),
    ]
    m = stream_metrics(deltas, sent_s=10.0)
    assert m.ttft_s is None
    assert m.tpot_s == pytest.approx((2.5 - 0.5) / 2)


def test_without_usage_tokens_are_counted() -> None:
    deltas = [d(1.0, role="assistant", content=""), d(1.5, content="a"), d(2.0, content="", finish_reason="length")]
    m = stream_metrics(deltas, sent_s=0.0)
    assert m.output_tokens == 2
    assert m.tpot_s == pytest.approx((2.0 - 1.5) / 1)


def test_one_token_has_no_tpot_and_no_content_has_no_ttft() -> None:
    m = stream_metrics([d(1.0, content="", finish_reason="stop")], sent_s=0.0)
    assert (m.ttft_s, m.tpot_s, m.output_tokens) == (None, None, 1)


@given(st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=200), st.sampled_from([50, 90, 99]))
def test_percentile_matches_numpy_linear(values: list[float], q: int) -> None:
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), abs=1e-12)


def test_percentiles_of_nothing_are_none() -> None:
    assert Percentiles.of([]) == Percentiles(p50=None, p90=None, p99=None)
