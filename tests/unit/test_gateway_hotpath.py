"""The gateway's per-token path, made cheaper without changing a byte of what it sends or a value it
reports: a delta frame built from its strings is the frame json.dumps gave; the relay-latency histogram
kept as flat counts is exposed as prometheus_client's Histogram exposes it; msgspec's chunk decoder (the
stream reader's fast path) gives the delta, or the error, that json.loads and pydantic give. No speed is
asserted here: benchmarks/gateway.py measures it."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from qwenops.errors import InBandError, StreamError
from qwenops.gateway import protocol
from qwenops.gateway.metrics import LATENCY_BUCKETS_S, RelayLatency
from qwenops.stream import chunks
from qwenops.stream.chunks import DeltaReader

# Any text, lone surrogates, controls and characters past the BMP included (what a server's JSON can hold).
TEXT = st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=40)


def old_dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------------------------- frames


@settings(max_examples=400, deadline=None)
@given(chat_id=TEXT, content=TEXT, reasoning=TEXT)
def test_a_delta_frame_is_the_frame_json_dumps_gave(chat_id: str, content: str, reasoning: str) -> None:
    expected: dict[str, Any] = {"type": "delta", "id": chat_id, "content": content}
    if reasoning:
        expected["reasoning"] = reasoning
    head = protocol.delta_head(chat_id)
    assert protocol.delta(chat_id, content, reasoning) == old_dumps(expected)
    assert protocol.delta(chat_id, content, reasoning, head=head) == old_dumps(expected)
    assert protocol.sendable(protocol.delta(chat_id, content, reasoning)) == protocol.sendable(old_dumps(expected))


@settings(max_examples=200, deadline=None)
@given(chat_id=TEXT, message=TEXT, after=st.integers(0, 10**6), gap=st.floats(0, 1e9))
def test_the_other_frames_are_the_frames_json_dumps_gave(chat_id: str, message: str, after: int, gap: float) -> None:
    assert protocol.error(chat_id, "interrupted", message) == old_dumps(
        {"type": "error", "id": chat_id, "code": "interrupted", "message": message})
    assert protocol.resumed(chat_id, after, gap) == old_dumps(
        {"type": "resumed", "id": chat_id, "after_tokens": after, "gap_ms": gap})
    usage = {"prompt_tokens": 1, "completion_tokens": after, "total_tokens": after + 1}
    assert protocol.done(chat_id, "stop", usage) == old_dumps(
        {"type": "done", "id": chat_id, "finish_reason": "stop", "usage": usage})
    assert protocol.PONG == '{"type":"pong"}'


# --------------------------------------------------------------------------------------------- metrics


def exposition(registry: CollectorRegistry) -> list[str]:
    """The text format's lines, the `_created` timestamps' values left out (they differ by construction)."""
    lines = generate_latest(registry).decode().splitlines()
    return [line.rsplit(" ", 1)[0] if "_created " in line else line for line in lines]


def test_the_flat_histogram_is_exposed_as_prometheus_clients_histogram() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    name, text = "qwenops_gateway_relay_latency_seconds", "From a chunk to its frame"
    flat = RelayLatency(name, text, LATENCY_BUCKETS_S)
    ours.register(flat)
    reference = Histogram(name, text, buckets=LATENCY_BUCKETS_S, registry=theirs)
    assert exposition(ours) == exposition(theirs)  # empty
    # every bound itself (le is inclusive), just past it, 0, and past the last bound
    values = [0.0, *LATENCY_BUCKETS_S, *(bound * 1.0001 for bound in LATENCY_BUCKETS_S), 30.0, 1e-9]
    for value in values:
        flat.observe(value)
        reference.observe(value)
    assert exposition(ours) == exposition(theirs)
    assert math.isclose(flat.sum, sum(values))


# --------------------------------------------------------------------------------------------- chunks

# What follows compares msgspec's decoder with json.loads + pydantic (the dev install has msgspec, through
# qwenops[gateway]; without it the reader has only the one path).
needs_msgspec = pytest.mark.skipif(chunks.quick_delta is None, reason="msgspec is not installed")

VLLM_CHUNKS = [
    # vLLM 0.32's own, with return_token_ids: the role chunk (with the prompt's ids), a token, the closing
    # chunk, the usage chunk
    '{"id":"chatcmpl-8f2a","object":"chat.completion.chunk","created":1733544000,"model":"Qwen3-14B",'
    '"prompt_token_ids":[151644,872,198],"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
    '"logprobs":null,"finish_reason":null}]}',
    '{"id":"chatcmpl-8f2a","object":"chat.completion.chunk","created":1733544000,"model":"Qwen3-14B",'
    '"choices":[{"index":0,"delta":{"content":" the"},"logprobs":null,"finish_reason":null,"token_ids":[279]}]}',
    '{"id":"chatcmpl-8f2a","object":"chat.completion.chunk","created":1733544000,"model":"Qwen3-14B",'
    '"choices":[{"index":0,"delta":{"reasoning":"hm"},"logprobs":null,"finish_reason":null,"token_ids":[76,1]}]}',
    '{"id":"c","choices":[{"index":0,"delta":{"reasoning_content":"old name"},"finish_reason":null}]}',
    '{"id":"c","choices":[{"index":0,"delta":{"reasoning":"","reasoning_content":"x","content":null}}]}',
    '{"id":"c","choices":[{"index":0,"delta":{"reasoning":"new","reasoning_content":"old","content":"both"}}]}',
    '{"id":"chatcmpl-8f2a","object":"chat.completion.chunk","model":"Qwen3-14B","choices":[{"index":0,'
    '"delta":{"content":""},"logprobs":null,"finish_reason":"stop","stop_reason":null,"token_ids":[151645]}]}',
    '{"id":"chatcmpl-8f2a","object":"chat.completion.chunk","model":"Qwen3-14B","choices":[],'
    '"usage":{"prompt_tokens":3,"total_tokens":5,"completion_tokens":2}}',
    '{"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b"}}]}',  # n = 2: the first choice
    '{"choices":[{"delta":{"content":"\\ud83d\\ude00 \\u00e9\\n"}}], "id": null, "model": null}',
    '{"usage":{}}', '{"choices":null}', '{"choices":[{}]}', '{"choices":[{"delta":null}]}', "{}",
    '{"id":"a","id":"b","choices":[{"delta":{"content":"1"}}],"choices":[{"delta":{"content":"2"}}]}',
    '{"choices":[{"token_ids":[1000000000000000000000000000000]}]}',
    ' {"choices":[{"delta":{"content":"spaces"}}]}\n',
    '{"x":1e400,"choices":[{"delta":{"content":"an ignored infinity"}}]}',
    # what the fast path refuses and the old path decides (a lone surrogate, NaN, an error key, not JSON, ...)
    '{"choices":[{"delta":{"content":"a\\ud800b"}}]}',
    '{"x":NaN,"choices":[{"delta":{"content":"c"}}]}',
    '{"error":{"message":"EngineCore encountered an issue","code":500}}', '{"error":null}',
    '{"error":"x","choices":[{"delta":{"content":"c"}}]}',
    "[DONE]", "not json", "[1, 2]", '"text"', "null", "", '{"a":1', '{"x":' + "[" * 5000 + "]" * 5000 + "}",
    '{"choices":[{"delta":{"content":1}}]}', '{"choices":[{"delta":{"content":true}}]}',
    '{"choices":[{"token_ids":[true]}]}', '{"choices":[{"token_ids":[1.0]}]}', '{"choices":[{"token_ids":"1"}]}',
    '{"choices":{"0":{}}}', '{"choices":[1]}', '{"choices":[{"delta":[]}]}', '{"choices":[{"finish_reason":1}]}',
    '{"usage":{"prompt_tokens":"3"}}', '{"usage":[]}', '{"usage":{"total_tokens":false}}', '{"id":5}',
    '{"model":["m"]}', '{"prompt_token_ids":[1,"2"]}', '{"prompt_token_ids":null,"choices":[{"delta":{}}]}',
    '{"choices":[{"delta":{"content":"ok"}},{"delta":{"content":5}}]}',  # pydantic checks every choice
]


def read_all(datas: list[str], *, fast: bool, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What a reader makes of each event's data: the delta, or the error's type and message; then its counts."""
    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(chunks, "quick_delta", None)
        reader = DeltaReader()
        seen: list[Any] = []
        for data in datas:
            try:
                seen.append(reader.read(data, 1.5))
            except (StreamError, InBandError) as exc:
                seen.append((type(exc).__name__, exc.message))
        return [*seen, reader.chunks, reader.events, reader.done, "".join(reader.text)]


def test_the_fast_chunk_decoder_is_in_use_wherever_msgspec_is_installed() -> None:
    import importlib.util

    if importlib.util.find_spec("msgspec") is None:
        assert chunks.quick_delta is None
        return
    assert chunks.quick_delta is not None
    assert chunks.quick_delta(VLLM_CHUNKS[1], 2.0) == chunks.decode_event(VLLM_CHUNKS[1], 2.0).delta


@needs_msgspec
@pytest.mark.parametrize("data", VLLM_CHUNKS, ids=range(len(VLLM_CHUNKS)))
def test_the_fast_chunk_decoder_reads_what_json_and_pydantic_read(data: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert read_all([data], fast=True, monkeypatch=monkeypatch) == read_all([data], fast=False,
                                                                           monkeypatch=monkeypatch)


@needs_msgspec
def test_a_whole_stream_reads_the_same_through_both_decoders(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = [*VLLM_CHUNKS[:7], "[DONE]"]
    assert read_all(stream, fast=True, monkeypatch=monkeypatch) == read_all(stream, fast=False,
                                                                           monkeypatch=monkeypatch)


JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats(allow_nan=True) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8)
DELTA = st.fixed_dictionaries({}, optional={
    key: st.one_of(st.none(), TEXT, JSON_VALUE) for key in ("role", "content", "reasoning", "reasoning_content")})
CHOICE = st.fixed_dictionaries({}, optional={
    "index": st.integers(0, 3), "delta": st.one_of(st.none(), DELTA, JSON_VALUE),
    "finish_reason": st.one_of(st.none(), st.sampled_from(["stop", "length"]), JSON_VALUE),
    "token_ids": st.one_of(st.none(), st.lists(st.integers(0, 10**20), max_size=3), JSON_VALUE)})
CHUNK = st.fixed_dictionaries({}, optional={
    "id": st.one_of(st.none(), TEXT, JSON_VALUE), "model": st.one_of(st.none(), TEXT),
    "choices": st.one_of(st.none(), st.lists(CHOICE, max_size=2), JSON_VALUE),
    "usage": st.one_of(st.none(), st.fixed_dictionaries({}, optional={
        key: st.one_of(st.none(), st.integers(0, 10**6), JSON_VALUE)
        for key in ("prompt_tokens", "completion_tokens", "total_tokens")}), JSON_VALUE),
    "prompt_token_ids": st.one_of(st.none(), st.lists(st.integers(0, 10**6), max_size=3), JSON_VALUE),
    "object": TEXT}).flatmap(
    # an in-band error now and then (most chunks have none, and the fast path only reads those)
    lambda chunk: st.one_of(st.just(chunk), st.builds(lambda error: {**chunk, "error": error}, JSON_VALUE)))


@needs_msgspec
@settings(max_examples=500, deadline=None)
@given(chunk=CHUNK)
def test_any_chunk_shape_reads_the_same_through_both_decoders(chunk: dict[str, Any]) -> None:
    data = json.dumps(chunk)  # NaN and Infinity too, as a server's json.dumps writes them
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert read_all([data], fast=True, monkeypatch=monkeypatch) == read_all([data], fast=False,
                                                                               monkeypatch=monkeypatch)
