"""The SSE parser against the WHATWG rules: every case whole, split at every offset, byte by byte,
and (hypothesis) under any chunking of any stream."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwenops.stream.sse import EventTooLarge, ServerSentEvent, SSEDecoder, parse_sse
from tests.conftest import REPO

CASES = REPO / "tests" / "data" / "sse" / "synthetic"
EXPECTED: dict[str, dict[str, object]] = json.loads((CASES / "expected.json").read_text(encoding="utf-8"))


def feed_chunks(chunks: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.close()


def as_dicts(events: list[ServerSentEvent]) -> list[dict[str, object]]:
    return [asdict(e) for e in events]


def test_every_case_file_has_an_expectation() -> None:
    assert sorted(p.stem for p in CASES.glob("*.sse")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_case_whole(name: str) -> None:
    raw = (CASES / f"{name}.sse").read_bytes()
    assert as_dicts(parse_sse(raw)) == EXPECTED[name]["events"], EXPECTED[name]["why"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_case_split_at_every_offset(name: str) -> None:
    raw = (CASES / f"{name}.sse").read_bytes()
    for cut in range(len(raw) + 1):
        assert as_dicts(feed_chunks([raw[:cut], raw[cut:]])) == EXPECTED[name]["events"], f"split at {cut}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_case_one_byte_at_a_time(name: str) -> None:
    raw = (CASES / f"{name}.sse").read_bytes()
    assert as_dicts(feed_chunks([raw[i : i + 1] for i in range(len(raw))])) == EXPECTED[name]["events"]


@pytest.mark.parametrize("name", ["normal.sse", "with_usage.sse", "cut_midstream.sse"])
def test_recorded_capture_split_at_every_offset(name: str) -> None:
    path = REPO / "tests" / "data" / "sse" / name
    raw = path.read_bytes()
    whole = parse_sse(raw)
    assert len(whole) >= 20
    for cut in range(0, len(raw) + 1, 3):
        assert feed_chunks([raw[:cut], raw[cut:]]) == whole, f"split at {cut}"


def test_cr_at_end_of_a_read_dispatches_without_waiting_for_the_next_read() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\r") == [ServerSentEvent(data="a")]
    # The LF that completes the CRLF arrives late: it must not count as another (empty) line.
    assert decoder.feed(b"\ndata: b\r") == []
    assert decoder.feed(b"\n\r\n") == [ServerSentEvent(data="b")]


def test_retry_is_remembered_on_the_decoder() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"retry: 250\n\n")
    assert decoder.retry == 250


def test_a_retry_of_more_digits_than_a_time_needs_is_ignored() -> None:
    """60,000 digits: int() would raise (Python's 4,300-digit bound), which no caller expects."""
    decoder = SSEDecoder()
    decoder.feed(b"retry: 250\n\n")
    assert decoder.feed(b"retry: " + b"9" * 60_000 + b"\ndata: a\n\n") == [ServerSentEvent(data="a")]
    assert decoder.feed(b"retry: 12345678901\n\n") == []
    assert decoder.retry == 250
    decoder.feed(b"retry: 9999999999\n\n")
    assert decoder.retry == 9_999_999_999


def test_partial_event_is_visible() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: {\"half\":")
    assert decoder.has_partial_event
    decoder.feed(b" 1}\n\n")
    assert not decoder.has_partial_event


def test_a_line_without_end_cannot_grow_past_the_limit() -> None:
    decoder = SSEDecoder(max_event_bytes=1000)
    decoder.feed(b"data: " + b"x" * 900)
    with pytest.raises(EventTooLarge, match="a line grew past 1,000 bytes"):
        decoder.feed(b"x" * 200)


def test_an_event_of_many_data_lines_cannot_grow_past_the_limit() -> None:
    decoder = SSEDecoder(max_event_bytes=1000)
    with pytest.raises(EventTooLarge, match="an event grew past 1,000 bytes"):
        for _ in range(100):
            decoder.feed(b"data: " + b"y" * 50 + b"\n")


def test_events_under_the_limit_pass_however_many() -> None:
    decoder = SSEDecoder(max_event_bytes=100)
    events = [e for _ in range(1000) for e in decoder.feed(b": keep-alive\n" + b"data: " + b"z" * 90 + b"\n\n")]
    assert len(events) == 1000


# Streams built from the pieces that matter: every line ending, comments, BOM, fields, odd values.
_line_end = st.sampled_from([b"\n", b"\r", b"\r\n"])
_value = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]), max_size=12)
_line = st.one_of(
    st.builds(lambda v: b"data: " + v.encode(), _value),
    st.builds(lambda v: b"data:" + v.encode(), _value),
    st.just(b"data"),
    st.builds(lambda v: b"event: " + v.encode(), _value),
    st.builds(lambda v: b"id: " + v.encode(), _value),
    st.builds(lambda n: b"retry: " + str(n).encode(), st.integers(0, 10_000)),
    st.builds(lambda v: b":" + v.encode(), _value),
    st.just(b""),
)
_stream = st.builds(
    lambda bom, lines, ends: (b"\xef\xbb\xbf" if bom else b"")
    + b"".join(line + end for line, end in zip(lines, ends, strict=False)),
    st.booleans(),
    st.lists(_line, max_size=30),
    st.lists(_line_end, min_size=30, max_size=30),
)


@settings(max_examples=300, deadline=None)
@given(raw=_stream, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_any_chunking_yields_the_same_events(raw: bytes, cuts: list[int]) -> None:
    offsets = sorted({min(c, len(raw)) for c in cuts})
    chunks = [raw[a:b] for a, b in zip([0, *offsets], [*offsets, len(raw)], strict=True)]
    assert feed_chunks(chunks) == parse_sse(raw)


def test_a_line_sent_in_many_small_pieces_is_joined_once() -> None:
    """Audit 11: a line without its newline was rebuilt whole on every chunk (`pending + piece`): 2 MiB in 64-byte
    chunks took 34 s. The pieces are kept and joined when the line ends; the line is the same, and the bound on a
    line without a newline holds while it is in pieces."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: ") == []
    for _ in range(2 * 1024 * 1024 // 64):
        assert decoder.feed(b"a" * 64) == []
    assert decoder.has_partial_event
    [event] = decoder.feed(b"\r\n\r\n")
    assert event.data == "a" * (2 * 1024 * 1024)
    bounded = SSEDecoder(max_event_bytes=1000)
    bounded.feed(b"data: x\n")
    with pytest.raises(EventTooLarge, match="a line grew past 1,000 bytes"):
        for _ in range(100):
            bounded.feed(b"a" * 64)
    pieces = SSEDecoder()
    assert [e.data for chunk in (b"da", b"ta: he", b"llo", b"\n", b"\n") for e in pieces.feed(chunk)] == ["hello"]
