"""OpenAI `chat.completion.chunk` decoding: the one decoder the client, the conformance checks and
smoke-stream share (sans-IO: data strings in, typed values out).

`decode_event(data, arrived_s)` says what one SSE event's data is: `[DONE]`, a chunk (as a `ChatDelta`
and the JSON object it came from), an in-band error (`data: {"error": ...}`, which vLLM sends when its
engine dies), data that is not a JSON object, or a JSON object without a chunk's shape. `DeltaReader`
follows one stream through it: tokens and text so far, whether `[DONE]` came, and the typed errors
that a library caller wants raised (`read`) or that a checker wants recorded (`decode`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qwenops.errors import InBandError, StreamError, StreamInterrupted
from qwenops.untrusted import MAX_WIRE_COUNT

DONE = "[DONE]"


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass(frozen=True, slots=True)
class Resumed:
    """The stream was cut and continued (`astream_chat(..., resume=Resume())`): `after_tokens` tokens had
    arrived before the cut, the continuation's first token came `gap_ms` after it, on resume `attempt`
    (1 for the first re-request of this chat). The gateway sends it as
    `{"type": "resumed", "id": delta.id, "after_tokens": ..., "gap_ms": ...}`."""

    after_tokens: int
    gap_ms: float
    attempt: int


@dataclass(frozen=True, slots=True)
class ChatDelta:
    """One `chat.completion.chunk`, flattened to its first choice.

    `arrived_s` is `time.perf_counter()` when the bytes that completed this chunk arrived; `sent_s` on the
    stream is the same clock when the request was sent, so `arrived_s - sent_s` is a latency.
    """

    arrived_s: float
    id: str
    model: str
    role: str | None = None
    content: str = ""
    reasoning_content: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    has_choice: bool = True  # False for the usage-only chunk, whose `choices` is empty
    token_ids: tuple[int, ...] | None = None  # vLLM's `token_ids`, sent when the request asks `return_token_ids`
    # vLLM's `prompt_token_ids`, on the first chunk when the request asks `return_token_ids`
    prompt_token_ids: tuple[int, ...] | None = None
    # Set on the one choice-less delta that marks where a resumed stream continues (no text, no tokens).
    resumed: Resumed | None = None

    @property
    def is_token(self) -> bool:
        """True for a chunk that a generation step produced: any chunk with a choice except the opening
        one that only announces the role. The metrics time token chunks (as `vllm bench serve` times
        chunks with choices).

        vLLM sends one per engine step, text or not: the stop token is the empty chunk with
        `finish_reason`, and special tokens (after `ignore_eos`) arrive as `content: ""`. Other servers
        (OpenAI's own) send the closing chunk without counting a token for it.
        """
        if not self.has_choice:
            return False
        announces_role = self.role is not None and not (self.content or self.reasoning_content)
        return not announces_role or self.finish_reason is not None

    @property
    def has_text(self) -> bool:
        return bool(self.content or self.reasoning_content)

    @property
    def tokens(self) -> int:
        """Tokens this chunk carries: exact with `token_ids`; else 1 per token chunk (an estimate: vLLM
        merges the deltas of several engine steps into one chunk when the reader lags, and servers differ
        on whether the closing chunk stands for a token)."""
        if self.token_ids is not None:
            return len(self.token_ids)
        return int(self.is_token)


# --------------------------------------------------------------------------------------------- wire shape


class _WireModel(BaseModel):
    # Strict: a chunk whose fields have the wrong JSON types is the server's bug to report, not to coerce.
    model_config = ConfigDict(strict=True, frozen=True)


class _WireDelta(_WireModel):
    role: str | None = None
    content: str | None = None
    # vLLM >= 0.10 names it `reasoning`; older vLLM and DeepSeek's API `reasoning_content`.
    reasoning: str | None = None
    reasoning_content: str | None = None


# A token count or id from the wire: 0 to 2^31 - 1. A count of 4,300 digits overflowed the metrics' float
# arithmetic (exit 4), and a negative one passed for a measurement that tune saved a profile on (audit 5).
WireCount = Annotated[int, Field(ge=0, le=MAX_WIRE_COUNT)]  # every decoder of server JSON uses it


class _WireChoice(_WireModel):
    delta: _WireDelta | None = None
    finish_reason: str | None = None
    token_ids: list[WireCount] | None = None


class _WireUsage(_WireModel):
    prompt_tokens: WireCount | None = None
    completion_tokens: WireCount | None = None
    total_tokens: WireCount | None = None


class _WireChunk(_WireModel):
    """The fields of a `chat.completion.chunk` that qwenops reads; any others are ignored."""

    id: str | None = None
    model: str | None = None
    choices: list[_WireChoice] | None = None
    usage: _WireUsage | None = None
    prompt_token_ids: list[WireCount] | None = None


# pydantic's error types, in the words of the JSON the server sent
_WANTED = {
    "model_type": "must be an object",
    "list_type": "must be an array",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "greater_than_equal": "must not be negative",
    "less_than_equal": f"must be at most {MAX_WIRE_COUNT:,}",
}


def _short_json(value: object) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 80 else text[:79] + "…"


try:
    import msgspec
except ImportError:  # an optional speed-up, which `qwenops[gateway]` installs: json.loads and pydantic then
    msgspec = None  # type: ignore[assignment]

if msgspec is not None:
    # The same fields as the _Wire models below, as msgspec checks them in C while it parses: a JSON string,
    # integer (never a bool or a float) or null where they want one, other keys skipped. Whatever it refuses,
    # json.loads and pydantic decide as before (it refuses a little more than they do: NaN, a lone surrogate,
    # so that path also names the field), so it changes no result, only the cost: parsed and checked in
    # about a sixth of the time json.loads alone takes for a vLLM chunk (0.5 vs 3.1 µs on the 2-core machine).

    class _FastDelta(msgspec.Struct):
        role: str | None = None
        content: str | None = None
        reasoning: str | None = None
        reasoning_content: str | None = None

    _FastCount = Annotated[int, msgspec.Meta(ge=0, le=MAX_WIRE_COUNT)]

    class _FastChoice(msgspec.Struct):
        delta: _FastDelta | None = None
        finish_reason: str | None = None
        token_ids: list[_FastCount] | None = None

    class _FastUsage(msgspec.Struct):
        prompt_tokens: _FastCount | None = None
        completion_tokens: _FastCount | None = None
        total_tokens: _FastCount | None = None

    class _FastChunk(msgspec.Struct):
        id: str | None = None
        model: str | None = None
        choices: list[_FastChoice] | None = None
        usage: _FastUsage | None = None
        prompt_token_ids: list[_FastCount] | None = None
        error: Any = msgspec.UNSET  # the key at all, null too, is an in-band error: `decode_event` says so

    _fast_decode = msgspec.json.Decoder(_FastChunk).decode
    _FAST_REFUSED = (msgspec.DecodeError, RecursionError)  # RecursionError: nested past the parser's limit
    _NO_DELTA = _FastDelta()

    def _typed_delta(data: str, arrived_s: float) -> ChatDelta | None:
        """The chunk's `ChatDelta`, parsed and checked in one pass by msgspec; None for anything else."""
        try:
            chunk = _fast_decode(data)
        except _FAST_REFUSED:
            return None
        if chunk.error is not msgspec.UNSET:
            return None
        choices, usage, prompt_ids = chunk.choices, chunk.usage, chunk.prompt_token_ids
        choice = choices[0] if choices else None
        delta = _NO_DELTA if choice is None or choice.delta is None else choice.delta
        token_ids = None if choice is None or choice.token_ids is None else tuple(choice.token_ids)
        return ChatDelta(
            arrived_s, chunk.id or "", chunk.model or "", delta.role, delta.content or "",
            delta.reasoning or delta.reasoning_content or "",
            None if choice is None else choice.finish_reason,
            None if usage is None else Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0,
                                             usage.total_tokens or 0),
            choice is not None, token_ids, None if prompt_ids is None else tuple(prompt_ids),
        )

quick_delta: Callable[[str, float], ChatDelta | None] | None = _typed_delta if msgspec is not None else None
"""The `ChatDelta` of one event's data when it is a chunk of the usual shape, else None (then `decode_event`
says what it is): `DeltaReader.read`'s fast path, where msgspec is installed."""


def chunk_to_delta(chunk: Mapping[str, Any], arrived_s: float) -> ChatDelta:
    """A parsed `chat.completion.chunk` as a `ChatDelta` (first choice; a usage-only chunk has none).

    Raises `StreamError` naming the field when the chunk does not have the shape of one."""
    try:
        wire = _WireChunk.model_validate(chunk)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"])
        wanted = _WANTED.get(first["type"], first["msg"].lower())
        raise StreamError(
            f"the server sent a malformed chunk: chunk{where} {wanted}, got {_short_json(first['input'])}",
            hint="the server is not speaking OpenAI's chat.completion.chunk format",
        ) from None
    choice = wire.choices[0] if wire.choices else None
    delta = choice.delta if choice is not None and choice.delta is not None else _WireDelta()
    usage = wire.usage
    return ChatDelta(
        arrived_s=arrived_s,
        id=wire.id or "",
        model=wire.model or "",
        role=delta.role,
        content=delta.content or "",
        reasoning_content=delta.reasoning or delta.reasoning_content or "",
        finish_reason=choice.finish_reason if choice is not None else None,
        has_choice=choice is not None,
        token_ids=tuple(choice.token_ids) if choice is not None and choice.token_ids is not None else None,
        prompt_token_ids=tuple(wire.prompt_token_ids) if wire.prompt_token_ids is not None else None,
        usage=Usage(
            prompt_tokens=usage.prompt_tokens or 0,
            completion_tokens=usage.completion_tokens or 0,
            total_tokens=usage.total_tokens or 0,
        )
        if usage is not None
        else None,
    )


# --------------------------------------------------------------------------------------------- one event

EventKind = Literal["done", "chunk", "error", "not_json", "malformed"]


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one event's data is: `delta` and `raw` (the JSON object) for a chunk; `raw` is the error object
    of an in-band error, the data itself when it is `not_json`; `problem` says what is wrong with
    `not_json` and `malformed` data (for `malformed`, which field)."""

    kind: EventKind
    delta: ChatDelta | None = None
    raw: Any = None
    problem: str = ""


_DONE_EVENT = Decoded("done")


def decode_event(data: str, arrived_s: float) -> Decoded:
    """Decode one SSE event's `data` (never raises: what is wrong is in the result)."""
    if data == DONE:
        return _DONE_EVENT
    try:
        chunk = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: JSON nested past the parser's limit
        return Decoded("not_json", raw=data, problem="not JSON")
    if not isinstance(chunk, dict):
        return Decoded("not_json", raw=data, problem="not a JSON object")
    if "error" in chunk:
        return Decoded("error", raw=chunk["error"])
    try:
        delta = chunk_to_delta(chunk, arrived_s)
    except StreamError as exc:
        return Decoded("malformed", raw=chunk, problem=exc.message)
    return Decoded("chunk", delta=delta, raw=chunk)


def in_band_error(error: Any, *, text_so_far: str, chunks: int) -> InBandError:
    info = error if isinstance(error, dict) else {"message": str(error)}
    message = str(info.get("message") or info)
    return InBandError(
        f"the server reported an error inside the stream: {message}",
        error=info,
        text_so_far=text_so_far,
        chunks=chunks,
    )


# vLLM ends a request it gave up on with an ordinary chunk whose finish_reason is "abort" (its engine was shut
# down: SIGTERM, a supervisor's restart, a drain past its timeout; vLLM 0.32 v1/engine/core.py aborts what is in
# flight) or "error" (the engine failed the request), followed by usage and [DONE]: an answer cut short that
# looks whole on the wire. The library reports it as the interruption it is, so resume continues it.
CUT_SHORT = frozenset({"abort", "error"})


class DeltaReader:
    """One stream's events → `ChatDelta`s, counting tokens and keeping the text for the errors that carry it.

    `decode` records and never raises (smoke-stream judges afterwards); `read` raises what a library
    caller must not miss: data that is not a chunk (`StreamError`), an in-band error (`InBandError`), and an
    answer the server cut short with finish_reason "abort" or "error" (`StreamInterrupted`, see CUT_SHORT).
    `finish` / `interrupted` give `StreamInterrupted` for a stream that ended before `[DONE]`.
    """

    __slots__ = ("chunks", "done", "events", "text")

    def __init__(self, *, text: list[str] | None = None, chunks: int = 0) -> None:
        """`text` and `chunks`: what earlier requests of the same answer delivered (a resumed stream), so
        that an error raised here carries the whole partial answer."""
        self.done = False
        self.text: list[str] = list(text or ())  # content and reasoning so far
        self.chunks = chunks  # tokens so far (see ChatDelta.tokens)
        self.events = 0  # events decoded so far

    def take(self, delta: ChatDelta) -> None:
        """Count a delta's tokens and keep its text."""
        if delta.finish_reason in CUT_SHORT:
            return  # the closing chunk of an answer vLLM gave up on carries no new token
        self.chunks += delta.tokens
        if delta.content:
            self.text.append(delta.content)
        elif delta.reasoning_content:
            self.text.append(delta.reasoning_content)

    def decode(self, data: str, arrived_s: float) -> Decoded:
        self.events += 1
        decoded = decode_event(data, arrived_s)
        delta = decoded.delta
        if delta is not None:
            self.take(delta)
        elif decoded.kind == "done":
            self.done = True
        return decoded

    def read(self, data: str, arrived_s: float) -> ChatDelta | None:
        if quick_delta is not None and data != DONE:  # the usual chunk, without a `Decoded` around it
            delta = quick_delta(data, arrived_s)
            if delta is not None:
                self.events += 1
                self.take(delta)
                if delta.finish_reason in CUT_SHORT:
                    raise self.cut_short(delta.finish_reason)
                return delta
        decoded = self.decode(data, arrived_s)
        if decoded.delta is not None and decoded.delta.finish_reason in CUT_SHORT:
            raise self.cut_short(decoded.delta.finish_reason)
        if decoded.delta is not None or decoded.kind == "done":
            return decoded.delta
        if decoded.kind == "error":
            raise in_band_error(decoded.raw, text_so_far="".join(self.text), chunks=self.chunks)
        if decoded.kind == "not_json":
            raise StreamError(f"the server sent an event that is {decoded.problem}: {decoded.raw[:200]!r}")
        raise StreamError(decoded.problem, hint="the server is not speaking OpenAI's chat.completion.chunk format")

    def finish(self, cause: str = "the server closed the connection") -> None:
        if not self.done:
            raise self.interrupted(cause)

    def cut_short(self, finish_reason: str) -> StreamInterrupted:
        return StreamInterrupted(
            f"stream interrupted after {self.chunks} tokens: the server ended the answer with finish_reason "
            f"{finish_reason!r} (vLLM gives up on a request so when its engine is stopped or restarted, or fails)",
            text_so_far="".join(self.text),
            chunks=self.chunks,
            hint="check the server's log: it was stopped, restarted or its engine failed; resume=Resume() continues",
        )

    def interrupted(self, cause: str) -> StreamInterrupted:
        return StreamInterrupted(
            f"stream interrupted after {self.chunks} tokens: {cause} before data: [DONE]",
            text_so_far="".join(self.text),
            chunks=self.chunks,
            hint="check the server's log: its engine may have died",
        )
