"""Resume a chat stream that was cut, from exactly the tokens already delivered (vLLM's token ids).

`astream_chat(..., resume=Resume())` asks vLLM for `return_token_ids`: the first chunk then carries the
prompt's token ids and every delta its own. When the stream is cut after at least one token (the
connection closed mid-answer, an in-band engine error, a 5xx, the engine dead), the library waits until
the server is ready again (`/health` answers 200 and `/v1/models` lists the model) and asks
`POST /v1/completions` for the rest with `prompt` = prompt ids + generated ids, `max_tokens` = what is
left, and the same sampling. The caller sees one stream: the chat's deltas, one choice-less delta whose
`resumed` says where it continued (`Resumed`: tokens before the cut, gap, attempt), then the
continuation's deltas under the chat's id. A cut before the first token is a plain retry of the chat
request. Token ids, not text: text re-tokenized need not give the same ids (BPE merges across the cut,
a character split over two tokens, special tokens the text leaves out), and the model continues from ids.

Never resumed (`not_resumable` says why): tool calls (a tool parser reads the whole answer as one; the
completions endpoint has none), `n` > 1, logprobs (the continuation's cannot be spliced: no
`top_logprobs` over the chat's vocabulary view, no prompt logprobs), guided decoding or
`response_format` (the grammar's state at the cut is lost), beam search, `echo`, and any parameter this
module does not know (it cannot tell whether the continuation would honour it). A server that sends no
token ids (too old for `return_token_ids`, or `include_reasoning: false`, which hides them) makes
resume a no-op: the error is raised as without resume, its hint saying why it was not resumed.

Reasoning (Qwen3's `<think>`): chat completions split `reasoning` from `content` with the server's
reasoning parser; a plain completion returns raw text. A cut inside the reasoning routes the
continuation's text to `reasoning_content` up to `</think>` and the rest to `content` (as vLLM's Qwen3
parser does); a cut inside the content keeps it content; a cut after tokens that carried no text yet
(only `<think>` itself, say) is not resumed, since which side the text belongs to cannot be known.
"""

from __future__ import annotations

import contextlib
import json
import time
from array import array
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from qwenops.errors import (
    BadInputError,
    HTTPStatusError,
    InBandError,
    NotHTTPError,
    StreamError,
    StreamInterrupted,
    UnreachableError,
)
from qwenops.net import proxy_allowed
from qwenops.stream.chunks import CUT_SHORT, DONE, ChatDelta, DeltaReader, Resumed, Usage, WireCount, in_band_error

if TYPE_CHECKING:
    import httpx

    from qwenops.stream.request import ChatRequest, Endpoint, StreamedRequest, Timeouts
    from qwenops.stream.transport import TimedEvent

__all__ = ["Resume", "Resumed", "not_resumable"]

THINK_END = "</think>"


@dataclass(frozen=True, slots=True)
class Resume:
    """How hard to try: at most `attempts` re-requests per chat (plain retries and continuations alike),
    none after `deadline_s` seconds from the first cut; each waits at most `ready_s` for the server
    to be ready again (polling every `poll_s`)."""

    attempts: int = 3
    deadline_s: float = 300.0
    ready_s: float = 180.0
    poll_s: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or isinstance(self.attempts, bool) or self.attempts < 1:
            raise BadInputError(f"must be an integer >= 1, got {self.attempts!r}", field="resume.attempts")
        for name in ("deadline_s", "ready_s", "poll_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 or value == float("inf"):
                raise BadInputError(f"must be a finite number of seconds > 0, got {value!r}", field=f"resume.{name}")


# --------------------------------------------------------------------------------------------- what may be resumed

# Sampling that means the same on /v1/completions and is sent again as it was.
_SAMPLING = frozenset({
    "temperature", "top_p", "top_k", "min_p", "seed", "stop", "stop_token_ids", "presence_penalty",
    "frequency_penalty", "repetition_penalty", "ignore_eos", "skip_special_tokens",
    "spaces_between_special_tokens", "include_stop_str_in_output", "length_penalty", "bad_words",
    "logit_bias", "allowed_token_ids", "priority", "user", "min_tokens",
})
# About the prompt (already in the prompt ids) or the stream's form (set anew): not sent again.
_PROMPT_OR_FORM = frozenset({
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "return_token_ids",
    "chat_template", "chat_template_kwargs", "add_generation_prompt", "continue_final_message",
    "add_special_tokens", "documents", "mm_processor_kwargs", "request_id", "cache_salt", "include_reasoning",
})
# Never resumed, and why.
_REFUSED = {
    "tools": "tool calls are parsed from the whole answer; /v1/completions has no tool parser",
    "tool_choice": "tool calls are parsed from the whole answer; /v1/completions has no tool parser",
    "functions": "function calls are parsed from the whole answer",
    "function_call": "function calls are parsed from the whole answer",
    "parallel_tool_calls": "tool calls are parsed from the whole answer",
    "logprobs": "the continuation's logprobs cannot be spliced onto the chat's",
    "top_logprobs": "the continuation's logprobs cannot be spliced onto the chat's",
    "prompt_logprobs": "prompt logprobs would cover the generated tokens too",
    "response_format": "the grammar's state at the cut is lost",
    "structured_outputs": "the grammar's state at the cut is lost",
    "guided_json": "the grammar's state at the cut is lost",
    "guided_regex": "the grammar's state at the cut is lost",
    "guided_choice": "the grammar's state at the cut is lost",
    "guided_grammar": "the grammar's state at the cut is lost",
    "use_beam_search": "beam search keeps beams the stream never showed",
    "best_of": "best_of picks among answers the stream never showed",
    "echo": "echo repeats the prompt, which the continuation's prompt would double",
}


def not_resumable(body: Mapping[str, Any]) -> str | None:
    """Why a chat request with this body cannot be resumed, or None when it can."""
    for key, value in body.items():
        if key in _SAMPLING or key in _PROMPT_OR_FORM:
            continue
        if key == "n":
            if value not in (None, 1):
                return f"n = {value!r}: the continuation of one of several answers cannot be told apart"
            continue
        if key in ("logprobs", "echo", "use_beam_search", "parallel_tool_calls") and not value:
            continue
        if key in ("tools", "functions") and not value:
            continue
        if key == "tool_choice" and value in (None, "none"):
            continue
        if key in _REFUSED:
            return f"{key}: {_REFUSED[key]}"
        return f"{key}: a parameter resume does not know, so it cannot tell whether the continuation would honour it"
    return None


# --------------------------------------------------------------------------------------------- the continuation


@dataclass(frozen=True)
class Continuation:
    """`POST /v1/completions` for the rest of an answer: the prompt as token ids."""

    model: str
    body: Mapping[str, Any]
    max_tokens: int | None

    @cached_property
    def encoded(self) -> bytes:
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()

    @property
    def max_events(self) -> int | None:
        return None if self.max_tokens is None else 2 * self.max_tokens + 8


def continuation(
    chat_body: Mapping[str, Any], prompt_ids: Sequence[int], generated: Sequence[int]
) -> Continuation | None:
    """The completions request for what is left of the answer (None: nothing is left, `max_tokens` reached)."""
    body: dict[str, Any] = {key: value for key, value in chat_body.items() if key in _SAMPLING}
    limit = chat_body.get("max_completion_tokens", chat_body.get("max_tokens"))
    remaining = None if limit is None else int(limit) - len(generated)
    if remaining is not None and remaining <= 0:
        return None
    if isinstance(body.get("min_tokens"), int):
        body["min_tokens"] = max(0, body["min_tokens"] - len(generated))
        if remaining is not None:
            body["min_tokens"] = min(body["min_tokens"], remaining)
    body.update({
        "model": chat_body["model"], "prompt": [*prompt_ids, *generated], "stream": True,
        "stream_options": {"include_usage": True}, "return_token_ids": True,
    })
    if remaining is not None:
        body["max_tokens"] = remaining
    return Continuation(model=str(chat_body["model"]), body=body, max_tokens=remaining)


class _Wire(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True)


class _WireCompletionChoice(_Wire):
    text: str | None = None
    token_ids: list[WireCount] | None = None  # ids 0 to 2^31 - 1, as in a chat chunk (audit 7: -5 and 10^50 passed)
    finish_reason: str | None = None


class _WireCompletionUsage(_Wire):
    prompt_tokens: WireCount | None = None  # a 4,000-digit count was exit 4 in smoke-stream --resume
    completion_tokens: WireCount | None = None


class _WireCompletionChunk(_Wire):
    choices: list[_WireCompletionChoice] | None = None
    usage: _WireCompletionUsage | None = None


# --------------------------------------------------------------------------------------------- one answer's progress


@dataclass
class _Progress:
    """What the caller has been given of one answer, across requests."""

    include_usage: bool
    id: str = ""
    model: str = ""
    # Token ids as 4-byte machine ints (every id is 0 to 2^31 - 1: WireCount), not lists of int objects (~36
    # bytes an id): a prompt of 2.5 million ids, all one 8 MiB event allows, kept 85 MB per answer (audit 7).
    prompt_ids: array[int] | None = None
    generated: array[int] = field(default_factory=lambda: array("i"))
    text: list[str] = field(default_factory=list)
    delivered: int = 0  # tokens given to the caller (ChatDelta.tokens: exact with ids)
    saw_content: bool = False
    saw_reasoning: bool = False
    role_sent: bool = False
    finish_reason: str | None = None
    in_reasoning: bool = False  # routing of a continuation's raw text
    held: str = ""  # a continuation's text that may be the start of `</think>`

    @property
    def tokens(self) -> int:
        return self.delivered

    def reader(self) -> DeltaReader:
        return DeltaReader(text=self.text, chunks=self.tokens)

    def take(self, delta: ChatDelta) -> None:
        if self.id == "" and delta.id:
            self.id, self.model = delta.id, delta.model
        if delta.prompt_token_ids is not None and self.prompt_ids is None:
            self.prompt_ids = array("i", delta.prompt_token_ids)
        if delta.role is not None:
            self.role_sent = True
        self.delivered += delta.tokens
        if delta.token_ids is not None:
            self.generated.extend(delta.token_ids)
        if delta.content:
            self.text.append(delta.content)
            self.saw_content = True
        elif delta.reasoning_content:
            self.text.append(delta.reasoning_content)
        if delta.reasoning_content:
            self.saw_reasoning = True
        if delta.finish_reason is not None:
            self.finish_reason = delta.finish_reason

    def refusal(self) -> str | None:
        """Why the answer so far cannot be continued (None: it can)."""
        if self.tokens != len(self.generated) or (self.tokens and self.prompt_ids is None):
            return "the server sent no token ids (it needs vLLM's return_token_ids, and include_reasoning on)"
        if not self.tokens and any(self.text):
            # Text came with `token_ids: []`: a retry "before the first token" would send that text again (audit 7).
            return "the server sent text without its token ids"
        if self.tokens and not self.text:
            return "cut before the first text: whether the rest is reasoning or content cannot be known"
        return None

    def usage(self, completion_tokens: int | None = None) -> Usage:
        prompt = len(self.prompt_ids or ())
        completion = self.tokens if completion_tokens is None else completion_tokens
        return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)

    def route(self, text: str, *, final: bool) -> tuple[str, str]:
        """A continuation's raw text as (reasoning, content), as the chat's reasoning parser would split it."""
        if not self.in_reasoning:
            return "", text
        text = self.held + text
        self.held = ""
        end = text.find(THINK_END)
        if end >= 0:
            self.in_reasoning = False
            return text[:end], text[end + len(THINK_END):]
        if not final:
            for size in range(min(len(THINK_END) - 1, len(text)), 0, -1):
                if THINK_END.startswith(text[-size:]):
                    self.held, text = text[-size:], text[:-size]
                    break
        return text, ""


# --------------------------------------------------------------------------------------------- the loop

# A cut that may be resumed (or, before the first token, retried).
_CUTS = (StreamInterrupted, InBandError)


def _retryable(exc: StreamError | UnreachableError, *, resuming: bool) -> bool:
    if isinstance(exc, _CUTS):
        return True
    if isinstance(exc, HTTPStatusError):
        return exc.status_code >= 500
    # The first request refused is a dead or wrong address (fail fast, as without resume); once a resume
    # is under way, it is the server restarting.
    return isinstance(exc, UnreachableError) and not isinstance(exc, NotHTTPError) and resuming


# A /v1/models answer read to decide readiness: a model list is a few KiB; a server that sends more, or
# JSON nested past the parser's recursion limit, is not ready (and never a crash).
MAX_MODELS_BYTES = 1024 * 1024


async def server_ready(http: httpx.AsyncClient, base_url: str, model: str, headers: Mapping[str, str],
                       timeout_s: float) -> bool:
    """One readiness probe, the one rule for resume and the gateway: `/health` answers 200 and
    `/v1/models` lists MODEL, both within TIMEOUT_S in all (a server that drips bytes is not ready); only
    /health's status is read and /v1/models' body bounded, as sent; anything else (an error, a body too
    large, compressed or not JSON) is not ready."""
    import anyio
    import httpx

    from qwenops.stream.transport import aread_small

    timeout = httpx.Timeout(timeout_s)
    headers = {**headers, "Accept-Encoding": "identity"}
    body: bytes | None = None
    listed: object = None
    with anyio.move_on_after(timeout_s):
        try:
            # /health needs no key, so none is sent with it (as serve's probe: qwenops.supervisor.health)
            unkeyed = {name: value for name, value in headers.items() if name.lower() != "authorization"}
            async with http.stream("GET", base_url + "/health", headers=unkeyed, timeout=timeout) as health:
                if health.status_code != 200:
                    return False
            async with http.stream("GET", base_url + "/v1/models", headers=headers, timeout=timeout) as models:
                if models.status_code != 200:
                    return False
                body = await aread_small(models, MAX_MODELS_BYTES)
            listed = json.loads(body).get("data", []) if body is not None else None
        except (httpx.HTTPError, ValueError, AttributeError, RecursionError):
            return False
    if body is None:
        return False
    return isinstance(listed, list) and any(isinstance(m, dict) and m.get("id") == model for m in listed)


async def _await_ready(http: httpx.AsyncClient, endpoint: Endpoint, model: str, until_s: float, poll_s: float) -> bool:
    """Poll the server until it is ready to serve `model` (server_ready); False at `until_s`."""
    import anyio

    headers = {k: v for k, v in endpoint.headers().items() if k == "Authorization"}
    while True:
        left = until_s - time.perf_counter()
        if left <= 0:
            return False
        if await server_ready(http, endpoint.base_url, model, headers, min(5.0, left)):
            return True
        await anyio.sleep(min(poll_s, max(0.0, until_s - time.perf_counter())))


@dataclass(frozen=True)
class _Link:
    """Where and how one answer's requests go."""

    http: httpx.AsyncClient
    endpoint: Endpoint
    timeouts: Timeouts


async def aresumed(
    client: httpx.AsyncClient | None, endpoint: Endpoint, request: ChatRequest, timeouts: Timeouts, resume: Resume
) -> AsyncGenerator[ChatDelta, None]:
    """`astream_chat(..., resume=resume)`, on `client` (None: one of its own, closed at the end)."""
    import httpx

    http = client if client is not None else httpx.AsyncClient(trust_env=proxy_allowed(endpoint.base_url))
    try:
        async with contextlib.aclosing(aresume_chat(http, endpoint, request, timeouts, resume)) as deltas:
            async for delta in deltas:
                yield delta
    finally:
        if client is None:
            await http.aclose()


def resumed(
    client: httpx.Client | None, endpoint: Endpoint, request: ChatRequest, timeouts: Timeouts, resume: Resume
) -> Generator[ChatDelta, None, None]:
    """`stream_chat(..., resume=resume)`: `aresumed` on an event loop in a worker thread, so it takes no
    `httpx.Client` (resume is async code; the sync client runs it, it keeps no twin of it)."""
    if client is not None:
        raise BadInputError(
            "resume runs the async client in a worker thread and cannot use an httpx.Client",
            field="client", hint="pass no client, or use astream_chat with an httpx.AsyncClient",
        )
    yield from _blocking(aresumed(None, endpoint, request, timeouts, resume))


def _blocking(deltas: AsyncGenerator[ChatDelta, None]) -> Generator[ChatDelta, None, None]:
    """An async generator's items, for a sync caller: its event loop runs in a worker thread (anyio's
    blocking portal)."""
    from anyio.from_thread import start_blocking_portal

    async def step() -> ChatDelta:
        return await deltas.__anext__()

    with start_blocking_portal() as portal:
        try:
            while True:
                try:
                    delta = portal.call(step)
                except StopAsyncIteration:
                    return
                yield delta
        finally:
            portal.call(deltas.aclose)


async def aresume_chat(
    http: httpx.AsyncClient, endpoint: Endpoint, request: ChatRequest, timeouts: Timeouts, resume: Resume
) -> AsyncGenerator[ChatDelta, None]:
    """`astream_chat(..., resume=resume)`: the chat's deltas, resumed across cuts (see the module doc)."""
    link = _Link(http, endpoint, timeouts)
    refused = not_resumable(request.body())
    if refused is None and "return_token_ids" not in request.extra_body:
        request = replace(request, extra_body={**request.extra_body, "return_token_ids": True})
    progress = _Progress(include_usage=request.include_usage)
    attempt = 0
    first_cut_s: float | None = None
    cut_s: float | None = None  # the cut the next continuation recovers from (for gap_ms)
    shown: StreamError | UnreachableError | None = None  # the error to raise when giving up
    while True:
        try:
            if progress.tokens == 0:
                async for delta in _achat(link, request, progress):
                    yield delta
            else:
                async for delta in _acontinue(link, request.body(), progress, (cut_s, attempt)):
                    yield delta
                    cut_s = None
            return
        except (StreamError, UnreachableError) as exc:
            now = time.perf_counter()
            if not _retryable(exc, resuming=attempt > 0):
                raise
            shown = exc if isinstance(exc, _CUTS) or not isinstance(shown, _CUTS) else shown
            first_cut_s = first_cut_s if first_cut_s is not None else now
            cut_s = cut_s if cut_s is not None else now
            if progress.tokens and progress.finish_reason is not None:
                # The answer had ended; only its closing (usage, [DONE]) was lost.
                if progress.include_usage:
                    yield ChatDelta(now, progress.id, progress.model, usage=progress.usage(), has_choice=False)
                return
            reason = refused or progress.refusal()
            if reason is None:
                reason = await _not_again(link, request.model, resume, attempt, first_cut_s)
            if reason is not None:
                raise _giving_up(shown, progress, reason) from None
            attempt += 1


async def _not_again(link: _Link, model: str, resume: Resume, attempt: int, first_cut_s: float) -> str | None:
    """Why no further attempt is made (None: the server is ready for one)."""
    now = time.perf_counter()
    deadline = first_cut_s + resume.deadline_s
    if attempt >= resume.attempts:
        return f"{resume.attempts} attempt(s) made"
    if now >= deadline:
        return f"the resume deadline ({resume.deadline_s:g} s) passed"
    until = min(now + resume.ready_s, deadline)
    if not await _await_ready(link.http, link.endpoint, model, until, resume.poll_s):
        return f"the server was not ready again within {until - now:.3g} s"
    return None


def _giving_up(exc: StreamError | UnreachableError, progress: _Progress, reason: str) -> StreamError | UnreachableError:
    """The error as without resume, carrying the whole partial answer, its hint saying why it was not resumed."""
    if isinstance(exc, (StreamInterrupted, InBandError)):
        exc.text_so_far = "".join(progress.text)
        exc.chunks = progress.tokens
    exc.hint = f"{exc.hint}; not resumed: {reason}" if exc.hint else f"not resumed: {reason}"
    return exc


def _events(link: _Link, url: str, request: StreamedRequest, reader: DeltaReader) -> AsyncGenerator[TimedEvent, None]:
    """The events of one request; the typed errors of `astream_chat`."""
    from qwenops.stream.async_client import aread_events

    return aread_events(link.http, link.endpoint, url, request, link.timeouts, reader=reader)


async def _achat(link: _Link, request: ChatRequest, progress: _Progress) -> AsyncGenerator[ChatDelta, None]:
    """The chat request (first or retried before any token), its deltas given to `progress`."""
    reader = progress.reader()
    retry = progress.id != ""
    async for timed in _events(link, link.endpoint.url, request, reader):
        delta = reader.read(timed.event.data, timed.arrived_s)
        if delta is None:
            continue
        if retry:
            if delta.role is not None and not delta.is_token and progress.role_sent:
                continue  # the role was announced by the request that failed
            if delta.id != progress.id:
                delta = replace(delta, id=progress.id)
        progress.take(delta)
        yield delta


async def _acontinue(link: _Link, chat_body: Mapping[str, Any], progress: _Progress,
                     after: tuple[float | None, int]) -> AsyncGenerator[ChatDelta, None]:
    """The rest of the answer from `/v1/completions`, as the chat's deltas (after one `resumed` delta);
    `after`: when the cut it recovers from happened, and which attempt this is (1, 2, ...)."""
    cut_s, attempt = after
    assert progress.prompt_ids is not None  # refusal() said so
    ask = continuation(chat_body, progress.prompt_ids, progress.generated)
    now = time.perf_counter()
    if ask is None:  # every token allowed had come; only the closing was lost
        yield ChatDelta(now, progress.id, progress.model, finish_reason="length")
        if progress.include_usage:
            yield ChatDelta(now, progress.id, progress.model, usage=progress.usage(), has_choice=False)
        return
    progress.in_reasoning, progress.held = progress.saw_reasoning and not progress.saw_content, ""
    before = progress.tokens
    reader = progress.reader()
    marked = False
    async for timed in _events(link, link.endpoint.completions_url, ask, reader):
        data, arrived_s = timed.event.data, timed.arrived_s
        reader.events += 1
        if data == DONE:
            reader.done = True
            continue
        delta = _completion_delta(data, arrived_s, progress, reader, before)
        if delta is None:
            continue
        if not marked and delta.tokens:
            marked = True
            gap_ms = (arrived_s - (cut_s if cut_s is not None else arrived_s)) * 1000.0
            yield ChatDelta(arrived_s, progress.id, progress.model, has_choice=False,
                            resumed=Resumed(after_tokens=before, gap_ms=round(gap_ms, 1), attempt=attempt))
        reader.take(delta)
        progress.take(delta)
        if delta.has_choice or progress.include_usage:
            yield delta


def _completion_delta(data: str, arrived_s: float, progress: _Progress, reader: DeltaReader,
                      before: int) -> ChatDelta | None:
    try:
        chunk = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: JSON nested past the parser's limit
        raise StreamError(f"the server sent an event that is not JSON: {data[:200]!r}") from None
    if isinstance(chunk, dict) and "error" in chunk:
        raise in_band_error(chunk["error"], text_so_far="".join(reader.text), chunks=reader.chunks)
    try:
        wire = _WireCompletionChunk.model_validate(chunk)
    except ValidationError:
        raise StreamError(f"the server sent a malformed completion chunk: {data[:200]!r}",
                          hint="the server is not speaking OpenAI's text_completion format") from None
    choice = wire.choices[0] if wire.choices else None
    if choice is None:
        if wire.usage is None:
            return None
        return ChatDelta(arrived_s, progress.id, progress.model, has_choice=False,
                         usage=progress.usage(before + (wire.usage.completion_tokens or 0)))
    if choice.finish_reason in CUT_SHORT:  # the continuation was cut short too: resumed again, or raised
        raise reader.cut_short(choice.finish_reason)
    reasoning, content = progress.route(choice.text or "", final=choice.finish_reason is not None)
    return ChatDelta(
        arrived_s, progress.id, progress.model, content=content, reasoning_content=reasoning,
        finish_reason=choice.finish_reason,
        token_ids=tuple(choice.token_ids) if choice.token_ids is not None else None,
        usage=progress.usage(before + (wire.usage.completion_tokens or 0)) if wire.usage is not None else None,
    )
