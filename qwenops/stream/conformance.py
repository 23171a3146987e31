"""Checks that one recorded chat-completion stream is what an OpenAI-compatible client may rely on.

Pure functions over a `StreamRecord` (status, headers, the raw timed SSE events, how the transfer
ended), so the same checks run on a live stream in `qwenops smoke-stream` and on recorded captures
in the unit tests. Every check has a stable name (the JUnit test name and the JSON `checks[].name`).

A *stitched* record (`smoke-stream --resume`) holds the deltas as the stream library gave them to its
caller (`astream_chat(..., resume=Resume())`), not the wire's events: a cut answer's chat chunks, one
choice-less delta with `resumed` set, then the continuation, which came from `/v1/completions`. The
checks then judge that one stream as a caller sees it: one id, one model, the role first, one
`finish_reason`, one usage for the whole answer, token ids adding up to it, the known answer. What
only the wire shows is said so: `chunk_object` is skipped (the continuation's chunks are
`text_completion`), `json_events` and `done_last` hold because the library raises on anything else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from qwenops.errors import InBandError, NotEventStream, QwenopsError, StreamError
from qwenops.stream.chunks import CUT_SHORT, ChatDelta, Resumed, decode_event
from qwenops.stream.client import TimedEvent

CHECK_NAMES: tuple[str, ...] = (
    "http_status",
    "content_type",
    "completed",
    "json_events",
    "chunk_object",
    "stable_id",
    "model_name",
    "first_delta_role",
    "non_empty_delta",
    "single_finish_reason",
    "usage_chunk",
    "done_last",
    "no_in_band_error",
    "token_count",
    "coherence",
)


class Check(BaseModel):
    """One named check: passed or not (`skipped` checks pass), and what was seen."""

    model_config = ConfigDict(frozen=True)

    name: str
    ok: bool
    detail: str = ""
    skipped: bool = False


@dataclass
class StreamRecord:
    """Everything one streamed request produced, as received."""

    status_code: int | None = None
    content_type: str = ""
    sent_s: float = 0.0
    events: list[TimedEvent] = field(default_factory=list)
    error: QwenopsError | None = None  # how the transfer failed, if it did (cut, timeout, HTTP error)
    body: str = ""  # the start of a body that is not a stream (a non-200 answer, a 200 that is not SSE)
    data_bytes: int = 0  # bytes of event data in `events` (smoke-stream bounds what it keeps)
    # A stitched record: the deltas as the stream library delivered them (smoke-stream --resume), the
    # resumed markers among them; `events` is empty then.
    deltas: list[ChatDelta] | None = None

    @property
    def stitched(self) -> bool:
        return self.deltas is not None


@dataclass(frozen=True)
class Expectations:
    model: str
    include_usage: bool = True
    known_answer: str | None = None  # the exact greedy answer, when the served model has one for the prompt
    no_answer_why: str = "no known answer to compare"


@dataclass
class Parsed:
    """The record's events decoded once for all checks."""

    chunks: list[dict[str, Any]]  # the well-formed ones
    not_json: list[str]
    malformed: list[str]  # JSON objects without a chunk's shape: why, for each
    errors: list[Any]
    deltas: list[ChatDelta]  # a stitched record's resumed markers included (no choice, no text, no tokens)
    done_positions: list[int]
    event_count: int
    stitched: bool = False
    resumed: list[Resumed] = field(default_factory=list)


def parse_record(record: StreamRecord) -> Parsed:
    """Every event through the one chunk decoder (`qwenops.stream.chunks.decode_event`); a stitched
    record's deltas as they are."""
    if record.deltas is not None:
        resumed = [d.resumed for d in record.deltas if d.resumed is not None]
        return Parsed([], [], [], [], list(record.deltas), [], len(record.deltas), stitched=True, resumed=resumed)
    parsed = Parsed([], [], [], [], [], [], len(record.events))
    for position, timed in enumerate(record.events):
        decoded = decode_event(timed.event.data, timed.arrived_s)
        if decoded.kind == "chunk":
            assert decoded.delta is not None
            parsed.chunks.append(decoded.raw)
            parsed.deltas.append(decoded.delta)
        elif decoded.kind == "done":
            parsed.done_positions.append(position)
        elif decoded.kind == "not_json":
            parsed.not_json.append(decoded.raw)
        elif decoded.kind == "error":
            parsed.errors.append(decoded.raw)
        else:
            parsed.malformed.append(decoded.problem)
    return parsed


def check_stream(record: StreamRecord, expect: Expectations, *, parsed: Parsed | None = None) -> list[Check]:
    """Every check in CHECK_NAMES order; checks that cannot apply (no stream at all) fail or skip.
    Pass `parsed` when the caller has already run `parse_record` on this record."""
    parsed = parse_record(record) if parsed is None else parsed
    return [_CHECKS[name](record, parsed, expect) for name in CHECK_NAMES]


def _ok(name: str, detail: str = "") -> Check:
    return Check(name=name, ok=True, detail=detail)


def _fail(name: str, detail: str) -> Check:
    return Check(name=name, ok=False, detail=detail)


def _skip(name: str, why: str) -> Check:
    return Check(name=name, ok=True, skipped=True, detail=f"skipped: {why}")


def _short(value: object, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _http_status(record: StreamRecord, _p: Parsed, _e: Expectations) -> Check:
    if record.status_code is None:
        return _fail("http_status", f"no response: {record.error.one_line() if record.error else 'not sent'}")
    if record.status_code != 200:
        cause = record.error.one_line() if record.error else _short(record.body)
        return _fail("http_status", cause)
    return _ok("http_status", "200")


def _is_event_stream(record: StreamRecord) -> bool:
    return record.content_type.split(";", 1)[0].strip().lower() == "text/event-stream"


def _content_type(record: StreamRecord, _p: Parsed, _e: Expectations) -> Check:
    if record.stitched and isinstance(record.error, NotEventStream):
        return _fail("content_type", record.error.one_line())
    if _is_event_stream(record):
        return _ok("content_type", record.content_type)
    seen = record.content_type or "missing"
    return _fail("content_type", f"Content-Type is {seen!r}, not text/event-stream")


def _completed(record: StreamRecord, parsed: Parsed, _e: Expectations) -> Check:
    if record.status_code != 200:
        return _fail("completed", "no stream (see http_status)")
    if not _is_event_stream(record):
        return _fail("completed", "no stream (see content_type)")
    if record.error is not None:
        return _fail("completed", f"{record.error.code}: {record.error.one_line()}")
    if parsed.stitched:
        return _ok("completed", f"{parsed.event_count} deltas{_resumed_note(parsed)}")
    return _ok("completed", f"{parsed.event_count} events")


def _resumed_note(parsed: Parsed) -> str:
    if not parsed.resumed:
        return ", not cut"
    where = ", ".join(f"after {r.after_tokens} tokens ({r.gap_ms:.0f} ms, attempt {r.attempt})" for r in parsed.resumed)
    return f", resumed {where}"


def _chunk_deltas(parsed: Parsed) -> list[ChatDelta]:
    """A stitched record's deltas that stand for chunks (not the resumed markers)."""
    return [d for d in parsed.deltas if d.resumed is None]


def _stitched_malformed(record: StreamRecord) -> str | None:
    """What the stream library refused in a stitched stream (data not JSON, a malformed chunk), if anything."""
    error = record.error
    if type(error) is StreamError:  # the library's own refusal of an event; its subclasses are other failures
        return error.one_line()
    return None


def _json_events(record: StreamRecord, parsed: Parsed, _e: Expectations) -> Check:
    if parsed.stitched:
        refused = _stitched_malformed(record)
        if refused is not None:
            return _fail("json_events", refused)
        chunks = _chunk_deltas(parsed)
        if not chunks:
            return _fail("json_events", "no JSON chunk arrived")
        return _ok("json_events", f"{len(chunks)} chunks, decoded by the stream library")
    if parsed.not_json:
        example = _short(parsed.not_json[0])
        return _fail("json_events", f"{len(parsed.not_json)} events are not JSON objects, e.g. {example!r}")
    if not parsed.chunks:
        return _fail("json_events", "no JSON chunk arrived")
    return _ok("json_events", f"{len(parsed.chunks)} chunks")


def _chunk_object(record: StreamRecord, parsed: Parsed, _e: Expectations) -> Check:
    if parsed.stitched:
        refused = _stitched_malformed(record)
        if refused is not None:
            return _fail("chunk_object", refused)
        return _skip("chunk_object", "a resumed stream is checked as the library delivers it (a continuation's "
                     "chunks are /v1/completions' text_completion)")
    wrong = [c.get("object") for c in parsed.chunks if c.get("object") != "chat.completion.chunk"]
    if parsed.malformed:
        return _fail("chunk_object", f"{len(parsed.malformed)} chunks are malformed, e.g. {parsed.malformed[0]}")
    if not parsed.chunks:
        return _fail("chunk_object", "no chunk arrived")
    if wrong:
        return _fail("chunk_object", f"{len(wrong)} chunks have object {wrong[0]!r}")
    return _ok("chunk_object", "chat.completion.chunk")


def _stable_id(_r: StreamRecord, parsed: Parsed, _e: Expectations) -> Check:
    chunks = _chunk_deltas(parsed) if parsed.stitched else None
    ids = {d.id for d in chunks} if chunks is not None else {c.get("id") for c in parsed.chunks}
    if not (chunks if chunks is not None else parsed.chunks):
        return _fail("stable_id", "no chunk arrived")
    if len(ids) != 1 or not next(iter(ids)):
        return _fail("stable_id", f"ids seen: {sorted(map(str, ids))[:3]}")
    return _ok("stable_id", str(next(iter(ids))))


def _model_name(_r: StreamRecord, parsed: Parsed, expect: Expectations) -> Check:
    chunks = _chunk_deltas(parsed) if parsed.stitched else None
    if not (chunks if chunks is not None else parsed.chunks):
        return _fail("model_name", "no chunk arrived")
    models = {d.model for d in chunks} if chunks is not None else {str(c.get("model")) for c in parsed.chunks}
    wrong = models - {expect.model}
    if wrong:
        return _fail("model_name", f"chunks name model {sorted(wrong)[0]!r}, expected {expect.model!r}")
    return _ok("model_name", expect.model)


def _first_delta_role(_r: StreamRecord, parsed: Parsed, _e: Expectations) -> Check:
    if parsed.stitched:
        delta = next((d for d in parsed.deltas if d.has_choice), None)
        if delta is None:
            return _fail("first_delta_role", "no chunk with choices arrived")
        if delta.role != "assistant":
            return _fail("first_delta_role", f"first delta has role {delta.role!r}, expected 'assistant'")
        return _ok("first_delta_role", "assistant")
    first = next((c for c in parsed.chunks if c.get("choices")), None)
    if first is None:
        return _fail("first_delta_role", "no chunk with choices arrived")
    role = (first["choices"][0].get("delta") or {}).get("role")
    if role != "assistant":
        return _fail("first_delta_role", f"first delta has role {role!r}, expected 'assistant'")
    return _ok("first_delta_role", "assistant")


def _non_empty_delta(_r: StreamRecord, parsed: Parsed, _e: Expectations) -> Check:
    content = sum(1 for d in parsed.deltas if d.content)
    reasoning = sum(1 for d in parsed.deltas if d.reasoning_content)
    if not content and not reasoning:
        return _fail("non_empty_delta", "no delta carried content or reasoning")
    return _ok("non_empty_delta", f"{content} content, {reasoning} reasoning deltas")


def _single_finish_reason(_r: StreamRecord, parsed: Parsed, _e: Expectations) -> Check:
    reasons = [d.finish_reason for d in parsed.deltas if d.finish_reason is not None]
    if len(reasons) != 1:
        return _fail("single_finish_reason", f"{len(reasons)} chunks carry a finish_reason: {reasons[:3]}")
    if reasons[0] in CUT_SHORT:
        return _fail("single_finish_reason", f"finish_reason {reasons[0]!r}: the server cut the answer short")
    return _ok("single_finish_reason", str(reasons[0]))


def _usage_chunk(_r: StreamRecord, parsed: Parsed, expect: Expectations) -> Check:
    usages = [d.usage for d in parsed.deltas if d.usage is not None]
    if not expect.include_usage:
        return _skip("usage_chunk", "stream_options.include_usage was not asked")
    if len(usages) != 1:
        return _fail("usage_chunk", f"{len(usages)} usage chunks, expected exactly 1")
    usage = usages[0]
    return _ok("usage_chunk", f"prompt {usage.prompt_tokens}, completion {usage.completion_tokens} tokens")


def _done_last(record: StreamRecord, parsed: Parsed, _e: Expectations) -> Check:
    if parsed.stitched:  # the library raises StreamInterrupted for a request that ends without [DONE]
        if record.error is not None or not parsed.deltas:
            return _fail("done_last", "no data: [DONE] ended the stream (see completed)")
        return _ok("done_last", "data: [DONE] ended every request (the stream library checks it)")
    if not parsed.done_positions:
        return _fail("done_last", "no data: [DONE] arrived")
    if parsed.done_positions != [parsed.event_count - 1]:
        return _fail("done_last", f"[DONE] at events {parsed.done_positions} of {parsed.event_count}")
    return _ok("done_last", "data: [DONE] is the last event")


def _no_in_band_error(record: StreamRecord, parsed: Parsed, _e: Expectations) -> Check:
    if parsed.stitched:  # an in-band error that was resumed is a cut the stream recovered from
        if isinstance(record.error, InBandError):
            return _fail("no_in_band_error", f"the server sent an error event: {_short(record.error.message)}")
        return _ok("no_in_band_error", "none unresumed" if parsed.resumed else "none")
    if parsed.errors:
        error = parsed.errors[0]
        message = error.get("message") if isinstance(error, dict) else error
        return _fail("no_in_band_error", f"the server sent an error event: {_short(message)}")
    return _ok("no_in_band_error", "none")


def _token_count(_r: StreamRecord, parsed: Parsed, _e: Expectations) -> Check:
    usages = [d.usage for d in parsed.deltas if d.usage is not None]
    token_chunks = [d for d in parsed.deltas if d.is_token]
    if not usages:
        counted = sum(d.tokens for d in token_chunks)
        return _skip("token_count", f"no usage to compare with ({counted} token chunks)")
    expected = usages[-1].completion_tokens
    if token_chunks and all(d.token_ids is not None for d in token_chunks):
        counted = sum(d.tokens for d in token_chunks)
        if counted != expected:
            return _fail("token_count", f"{counted} token ids streamed, usage.completion_tokens is {expected}")
        return _ok("token_count", f"{counted} token ids = usage.completion_tokens")
    # Without token ids only chunks with text are certainly tokens: vLLM merges several steps into one
    # chunk when the reader lags, and servers differ on the closing chunk (vLLM counts the stop token it
    # stands for, OpenAI and other servers and proxies count none). More text chunks than tokens is the
    # one certain error; any other difference is a note.
    text_chunks = sum(d.has_text for d in parsed.deltas)
    if text_chunks > expected:
        return _fail("token_count", f"{text_chunks} chunks with text, more than usage.completion_tokens {expected}")
    note = "without token_ids, only chunks <= tokens is checked"
    return _ok("token_count", f"{text_chunks} chunks with text for {expected} tokens ({note})")


def _coherence(_r: StreamRecord, parsed: Parsed, expect: Expectations) -> Check:
    if expect.known_answer is None:
        return _skip("coherence", expect.no_answer_why)
    text = "".join(d.content for d in parsed.deltas)
    if text != expect.known_answer:
        known = _short(expect.known_answer, 80)
        return _fail("coherence", f"answer {_short(text, 80)!r} differs from the known {known!r}")
    return _ok("coherence", "the greedy answer is the known text")


_CHECKS: Mapping[str, Callable[[StreamRecord, Parsed, Expectations], Check]] = {
    "http_status": _http_status,
    "content_type": _content_type,
    "completed": _completed,
    "json_events": _json_events,
    "chunk_object": _chunk_object,
    "stable_id": _stable_id,
    "model_name": _model_name,
    "first_delta_role": _first_delta_role,
    "non_empty_delta": _non_empty_delta,
    "single_finish_reason": _single_finish_reason,
    "usage_chunk": _usage_chunk,
    "done_last": _done_last,
    "no_in_band_error": _no_in_band_error,
    "token_count": _token_count,
    "coherence": _coherence,
}
