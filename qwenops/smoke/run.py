"""smoke-stream: open N concurrent streams (M in all), check each one, measure them → `SmokeReport`.

Every stream is recorded raw (status, Content-Type, timed SSE events, how it ended) and then judged by
`qwenops.stream.conformance` and measured by `qwenops.stream.metrics`, so what the report says is what
came over the wire. Streams run on asyncio with one shared httpx connection pool: N streams cost one
thread, and the timestamps of one stream are not delayed by another stream's parsing more than a read.

This is where smoke-stream's defaults come from (`resolve_options`): the stream library itself takes
everything explicitly and reads no settings.

With `--resume` (`SmokeOptions.resume`) each stream goes through the stream library instead
(`astream_chat(..., resume=Resume())`), so a cut answer is continued from its token ids; the record is
then the deltas as the library delivered them (a *stitched* record, `conformance.StreamRecord.deltas`),
judged as one stream, and the report says where each stream was resumed, or why it was not.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from qwenops.errors import (
    BadInputError,
    HTTPStatusError,
    InBandError,
    NotEventStream,
    QwenopsError,
    RunawayStream,
    StreamInterrupted,
    UnreachableError,
)
from qwenops.net import proxy_allowed
from qwenops.results import ErrorInfo
from qwenops.stream.chunks import DONE, ChatDelta, DeltaReader
from qwenops.stream.client import (
    ChatRequest,
    Endpoint,
    Timeouts,
    TransportCut,
    aopen_chat_stream,
    astream_chat,
    http_status_error,
    not_event_stream,
    redact_url,
)
from qwenops.stream.conformance import (
    CHECK_NAMES,
    Check,
    Expectations,
    StreamRecord,
    check_stream,
    parse_record,
)
from qwenops.stream.errors import encoded_stream
from qwenops.stream.metrics import Percentiles, StreamMetrics, median, stream_metrics
from qwenops.stream.transport import StreamHead, aread_small
from qwenops.untrusted import printable

DEFAULT_PROMPT = "Tell me about the sea."
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_DEADLINE_S = 300.0
DEFAULT_RESUME_ATTEMPTS = 3
DEFAULT_RESUME_WAIT_S = 180.0
# What one stream may keep of its raw events for the checks: 64 tokens are ~25 KB, 4096 with token ids ~2 MB.
MAX_STREAM_BYTES = 16 * 1024 * 1024
_NO_KEY_HINT = "the server wants an API key: set QWENOPS_API_KEY to the value of its --api-key"


class SmokeOptions(BaseModel):
    """What to run: resolved from flags, environment and profile by `resolve_options`."""

    model_config = ConfigDict(frozen=True)

    base_url: str
    model: str
    prompt: str = DEFAULT_PROMPT
    max_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float = Field(1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    concurrency: int = Field(1, ge=1)
    requests: int = Field(1, ge=1)
    max_ttft_s: float | None = Field(None, gt=0, allow_inf_nan=False)
    min_tokens_per_s: float | None = Field(None, gt=0, allow_inf_nan=False)
    connect_timeout_s: float = Field(5.0, gt=0, allow_inf_nan=False)
    read_timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0, allow_inf_nan=False)
    deadline_s: float = Field(DEFAULT_DEADLINE_S, gt=0, allow_inf_nan=False)
    max_stream_bytes: int = Field(MAX_STREAM_BYTES, ge=1)
    include_usage: bool = True
    # vLLM's `return_token_ids`: every chunk lists its token ids, so the token count is exact even when
    # vLLM merges several steps into one chunk (it does when the reader lags behind the engine).
    token_ids: bool = True
    # vLLM's `ignore_eos` (as `vllm bench serve --ignore-eos`): every answer runs to max_tokens.
    ignore_eos: bool = False
    # Continue a cut stream from its token ids (the stream library's `Resume`): at most `resume_attempts`
    # re-requests per stream, each after waiting at most `resume_wait_s` for the server to be ready again.
    resume: bool = False
    resume_attempts: int = Field(DEFAULT_RESUME_ATTEMPTS, ge=1)
    resume_wait_s: float = Field(DEFAULT_RESUME_WAIT_S, gt=0, allow_inf_nan=False)
    api_key: SecretStr | None = Field(None, exclude=True)
    # What a 401 means here: no key configured, the key refused, or the key kept from another server.
    unauthorized_hint: str = Field(_NO_KEY_HINT, exclude=True)


class StreamResumed(BaseModel):
    """Where a stream was continued (`qwenops.stream.Resumed`): tokens delivered before the cut, the cut
    to the continuation's first token in milliseconds, and which re-request of this stream (from 1)."""

    model_config = ConfigDict(frozen=True)

    after_tokens: int
    gap_ms: float
    attempt: int


class StreamReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int
    ok: bool
    checks: tuple[Check, ...]
    metrics: StreamMetrics | None
    text: str
    error: ErrorInfo | None = None
    partial_tokens: int | None = None  # token chunks received before an interruption
    # With --resume: each place the stream was continued (empty: not cut), and, for a stream that failed
    # with resume on, why it was not resumed (the library's reason; None when it was, or resume was off).
    resumed: tuple[StreamResumed, ...] = ()
    not_resumed: str | None = None


class SmokeReport(BaseModel):
    """The `data` of `qwenops smoke-stream --json` (README "qwenops smoke-stream"; seconds throughout).

    `base_url` is shown with any credentials in it masked."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    base_url: str
    model: str
    prompt: str
    requests: int
    concurrency: int
    streams_ok: int
    checks: tuple[Check, ...]
    ttft_s: float | None
    first_chunk_s: float | None
    first_reasoning_s: float | None
    itl_s: Percentiles
    tpot_s: float | None
    e2e_s: float | None
    output_tokens: int
    output_tokens_per_s: float | None
    wall_s: float
    streams: tuple[StreamReport, ...]
    resume: bool = False  # --resume: streams were continued across cuts
    streams_resumed: int = 0  # streams continued at least once

    @property
    def errors(self) -> tuple[ErrorInfo, ...]:
        """Each distinct way streams failed, once (for the envelope's `errors` and the stderr lines)."""
        seen: dict[tuple[str, str], ErrorInfo] = {}
        for stream in self.streams:
            if stream.error is not None:
                seen.setdefault((stream.error.code, stream.error.message), stream.error)
        return tuple(seen.values())


class SmokeObserver(Protocol):
    """Progress hooks (the live view); called on the event loop, so they must not block."""

    def stream_started(self, index: int) -> None: ...
    def stream_delta(self, index: int, delta: ChatDelta) -> None: ...
    def stream_ended(self, index: int, ok: bool) -> None: ...


# --------------------------------------------------------------------------------------------- options


_OPTION_OF = {
    "max_tokens": "--max-tokens", "concurrency": "--concurrency", "requests": "--requests",
    "max_ttft_s": "--max-ttft", "min_tokens_per_s": "--min-tokens-per-s", "read_timeout_s": "--timeout",
    "connect_timeout_s": "--timeout", "deadline_s": "--deadline", "prompt": "--prompt", "model": "--model",
    "temperature": "profile client.temperature", "top_p": "profile client.top_p",
    "resume_attempts": "--resume-attempts", "resume_wait_s": "--resume-wait",
}


def resolve_options(
    *,
    profile: str | None,
    base_url: str | None,
    model: str | None,
    prompt: str | None,
    max_tokens: int | None,
    concurrency: int,
    requests: int | None,
    max_ttft_s: float | None,
    min_tokens_per_s: float | None,
    timeout_s: float,
    deadline_s: float = DEFAULT_DEADLINE_S,
    ignore_eos: bool = False,
    resume: bool = False,
    resume_attempts: int | None = None,
    resume_wait_s: float | None = None,
) -> SmokeOptions:
    """Flags first, then QWENOPS_BASE_URL / QWENOPS_API_KEY, then the profile (host and port, served
    name, `client:` sampling). The API key goes only to the server it was configured for (qwenops.config.target)."""
    from qwenops.config.target import configured_server

    server = configured_server(profile, base_url)
    settings, chosen, url = server.settings, server.profile, server.url
    configured, configured_from = server.configured, server.configured_from
    unauthorized_hint = _NO_KEY_HINT
    if settings.api_key:  # checked by configured_server, whether or not this run sends it
        if server.key_applies:
            unauthorized_hint = "QWENOPS_API_KEY was sent and refused: set it to the value of the server's --api-key"
        else:
            unauthorized_hint = (
                f"QWENOPS_API_KEY was not sent: it is for {redact_url(configured)} ({configured_from}), not for "
                "--base-url; to send it to this server, set QWENOPS_BASE_URL to this URL instead of --base-url"
            )
    if prompt is not None and not prompt.strip():
        raise BadInputError("must not be empty", field="--prompt")
    if not resume:
        for name, given in (("--resume-attempts", resume_attempts), ("--resume-wait", resume_wait_s)):
            if given is not None:
                raise BadInputError("only applies with --resume", field=name, hint=f"add --resume, or leave {name} out")
    try:
        return SmokeOptions(
            base_url=url,
            model=model or chosen.api_model_name,
            prompt=prompt or DEFAULT_PROMPT,
            max_tokens=max_tokens or chosen.client.max_tokens,
            temperature=chosen.client.temperature,
            top_p=chosen.client.top_p,
            concurrency=concurrency,
            requests=requests or concurrency,
            max_ttft_s=max_ttft_s,
            min_tokens_per_s=min_tokens_per_s,
            read_timeout_s=timeout_s,
            connect_timeout_s=min(timeout_s, 5.0),
            deadline_s=deadline_s,
            api_key=server.bearer,  # to this server only (config/target.py)
            unauthorized_hint=unauthorized_hint,
            ignore_eos=ignore_eos,
            resume=resume,
            resume_attempts=resume_attempts or DEFAULT_RESUME_ATTEMPTS,
            resume_wait_s=resume_wait_s or DEFAULT_RESUME_WAIT_S,
        )
    except ValidationError as exc:  # the CLI's types should have caught it: still one line, not a dump
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "options"
        raise BadInputError(f"{first['msg']}, got {first.get('input')!r}", field=_OPTION_OF.get(name, name)) from None


# --------------------------------------------------------------------------------------------- running


def run_smoke(
    options: SmokeOptions, *, observer: SmokeObserver | None = None, junit_path: Path | None = None
) -> SmokeReport:
    """Run the streams, judge and measure them; write JUnit XML if asked. Raises `UnreachableError`
    when no stream could connect at all (exit 3), so "down" and "broken" stay distinguishable, and
    `BadInputError` when no request could even be sent (exit 2: the fault is ours, not the server's)."""
    records, wall_s, served = asyncio.run(_run_streams(options, observer))
    for kind in (UnreachableError, BadInputError):
        same = [r.error for r in records if isinstance(r.error, kind)]
        if len(same) == len(records):
            raise same[0]
    report = build_report(options, records, wall_s, served=served)
    if junit_path is not None:
        write_junit(report, junit_path)
    return report


@dataclass
class _Run:
    options: SmokeOptions
    endpoint: Endpoint
    request: ChatRequest
    timeouts: Timeouts
    observer: SmokeObserver | None


def _plan(options: SmokeOptions, observer: SmokeObserver | None) -> _Run:
    return _Run(
        options=options,
        endpoint=Endpoint(
            base_url=options.base_url, api_key=options.api_key.get_secret_value() if options.api_key else None
        ),
        request=ChatRequest(
            messages=[{"role": "user", "content": options.prompt}],
            model=options.model,
            temperature=options.temperature,
            top_p=options.top_p,
            max_tokens=options.max_tokens,
            include_usage=options.include_usage,
            extra_body={
                **({"return_token_ids": True} if options.token_ids else {}),
                **({"ignore_eos": True} if options.ignore_eos else {}),
            },
        ),
        timeouts=Timeouts(
            connect_s=options.connect_timeout_s, read_s=options.read_timeout_s, total_s=options.deadline_s
        ),
        observer=observer,
    )


async def _run_streams(
    options: SmokeOptions, observer: SmokeObserver | None
) -> tuple[list[StreamRecord], float, ServedModel]:
    import httpx

    run = _plan(options, observer)
    slots = asyncio.Semaphore(options.concurrency)
    limits = httpx.Limits(max_connections=options.concurrency, max_keepalive_connections=options.concurrency)
    async with httpx.AsyncClient(limits=limits, trust_env=proxy_allowed(run.endpoint.base_url)) as client:

        async def one(index: int) -> StreamRecord:
            async with slots:
                record = await _record_stream(client, run, index)
            if observer is not None:
                observer.stream_ended(index, record.error is None)
            return record

        served = ServedModel(why_unknown="not asked: the answer cannot be compared anyway")
        if _comparable(options):
            served = await _identify_served_model(client, run)
        started = time.perf_counter()
        records = await asyncio.gather(*(one(i) for i in range(options.requests)))
        return list(records), time.perf_counter() - started, served


@dataclass(frozen=True)
class ServedModel:
    """What the server's model is known to answer: the tiny model's known answers, or why none are known."""

    known_answers: Mapping[str, str] | None = None
    why_unknown: str = "the served model was not identified"


def _comparable(options: SmokeOptions) -> bool:
    return options.temperature == 0.0 and not options.ignore_eos


_MAX_MODELS_BYTES = 1024 * 1024
_MODELS_TIMEOUT_S = 10.0


_MAX_ROOT_CHARS = 4096  # PATH_MAX on Linux


async def _identify_served_model(client: Any, run: _Run) -> ServedModel:
    """Is the server serving qwenops' tiny model? Its served name cannot tell (cpu-tiny answers as
    Qwen3-14B, like the GPU profiles), so ask vLLM's /v1/models for the `root` of the model (the path
    given to --model) and look there for the build stamp of `qwenops model build-tiny`."""
    import json

    import anyio
    import httpx

    from qwenops.tinymodel import read_known_answers

    name = run.request.model
    auth = {k: v for k, v in run.endpoint.headers().items() if k in ("Authorization", "Accept-Encoding")}
    listed: object = None
    # A side question: never worth more than a few seconds of the run, whatever the server does.
    with anyio.move_on_after(min(run.timeouts.read_s, _MODELS_TIMEOUT_S)):
        try:
            async with client.stream(
                "GET", run.endpoint.base_url + "/v1/models", headers=auth, timeout=run.timeouts.httpx()
            ) as response:
                body = await aread_small(response, _MAX_MODELS_BYTES) if response.status_code == 200 else None
                if body is not None:
                    listed = json.loads(body).get("data")
        except (httpx.HTTPError, ValueError, AttributeError, RecursionError):
            listed = None
    if not isinstance(listed, list):
        return ServedModel(why_unknown="the server's /v1/models did not list its models")
    root = next((m.get("root") for m in listed if isinstance(m, dict) and m.get("id") == name), None)
    if not isinstance(root, str) or not root:
        return ServedModel(why_unknown=f"/v1/models names no model path (root) for {name!r}")
    where = _model_dir_here(run.endpoint.base_url, root)
    if isinstance(where, str):
        return ServedModel(why_unknown=where)
    answers = read_known_answers(where)
    if answers is None:
        return ServedModel(why_unknown=f"the served model {where} is not qwenops' tiny model (no build stamp there)")
    return ServedModel(known_answers=answers)


def _model_dir_here(base_url: str, root: str) -> Path | str:
    """The served model's directory on this machine, or why it is not looked at. ROOT is the server's text
    naming a path on the server's machine: it is looked up here only when the server is on this machine
    (a loopback URL), and only as an absolute path of printable characters (no NUL, no control characters,
    at most PATH_MAX), so a server cannot send qwenops to read what it likes."""
    from urllib.parse import urlsplit

    from qwenops.net import loopback_host

    try:
        host = (urlsplit(base_url).hostname or "").rstrip(".").lower()
    except ValueError:
        host = ""
    if not loopback_host(host):
        return "the server is not on this machine (not a loopback URL), so its model path is not read here"
    if len(root) > _MAX_ROOT_CHARS or not root.startswith("/") or not root.isprintable():
        return "/v1/models names a model path (root) that is not an absolute path of printable characters"
    return Path(root)


def _answer_error(run: _Run, stream: StreamHead, body: bytes) -> QwenopsError:
    """Why an answer that is not a stream (as sent) is not, with smoke-stream's own fixes."""
    if stream.status_code != 200:
        error: HTTPStatusError = http_status_error(stream.status_code, body, model=run.request.model,
                                                   content_type=stream.content_type)
        if error.code == "unauthorized":
            error.hint = run.options.unauthorized_hint
        elif error.code == "model_not_found":
            name = run.request.model
            error.hint = f"the server does not serve a model named {name!r}; pass the served name with --model"
        return error
    if stream.is_event_stream and stream.is_encoded:
        return encoded_stream(stream.content_encoding)
    wrong = not_event_stream(stream.content_type, body)
    wrong.hint = "is --base-url the root of an OpenAI-compatible server such as vLLM (no /v1, no other path)?"
    return wrong


async def _record_stream(client: Any, run: _Run, index: int) -> StreamRecord:
    """One stream, recorded raw. The read loop only stores events (decoding waits until the stream has
    ended, unless the live view wants deltas), so the time between two reads is not spent on parsing."""
    if run.options.resume:
        return await _record_resumed_stream(client, run, index)
    record = StreamRecord()
    observer = run.observer
    reader = DeltaReader()  # live: fed as events come (the live view); else afterwards, for the counts
    if observer is not None:
        observer.stream_started(index)
    cap = run.options.max_stream_bytes
    try:
        async with aopen_chat_stream(client, run.endpoint, run.request, run.timeouts) as stream:
            record.status_code = stream.status_code
            record.content_type = stream.content_type
            record.sent_s = stream.sent_s
            if stream.status_code != 200 or not stream.is_event_stream or stream.is_encoded:
                body = await stream.aread_body()
                record.body = body.decode("utf-8", "replace")
                record.error = _answer_error(run, stream, body)
                return record
            events = record.events
            done = False
            try:
                async with aclosing(stream.aevents()) as arriving:
                    async for timed in arriving:
                        events.append(timed)
                        done = done or timed.event.data == DONE
                        record.data_bytes += len(timed.event.data)
                        if observer is not None:
                            decoded = reader.decode(timed.event.data, timed.arrived_s)
                            if decoded.delta is not None:
                                observer.stream_delta(index, decoded.delta)
                        if record.data_bytes > cap:
                            record.error = RunawayStream(
                                f"{record.data_bytes:,} bytes of events and no data: [DONE] after "
                                f"{_tally(record, reader).chunks} tokens, more than smoke-stream keeps of one "
                                f"stream ({cap:,}); stopped reading",
                                hint="the server does not honour max_tokens or never ends the stream",
                            )
                            return record
            except TransportCut as cut:
                cause = f"the connection broke ({run.endpoint.scrub(str(cut))})"
                record.error = _tally(record, reader).interrupted(cause)
            else:
                if not done:  # no [DONE]: decode what did arrive, to say how much
                    record.error = _tally(record, reader).interrupted("the server closed the connection")
    except QwenopsError as exc:
        record.error = exc
        if isinstance(exc, StreamInterrupted):
            exc.chunks = _tally(record, reader).chunks
    return record


async def _record_resumed_stream(client: Any, run: _Run, index: int) -> StreamRecord:
    """One stream through the stream library with resume: the deltas as a caller gets them (stitched
    across cuts, the resumed markers among them). The library does not say when the request's head went
    out, so `sent_s` is taken before it builds the request (a fraction of a millisecond earlier)."""
    from qwenops.stream.resume import Resume

    options, request = run.options, run.request
    resume = Resume(attempts=options.resume_attempts, ready_s=options.resume_wait_s, deadline_s=options.deadline_s)
    record = StreamRecord(deltas=[])
    deltas = record.deltas
    assert deltas is not None
    observer = run.observer
    if observer is not None:
        observer.stream_started(index)
    tokens = 0
    record.sent_s = time.perf_counter()
    try:
        arriving = astream_chat(
            request.messages, base_url=run.endpoint.base_url, model=request.model, api_key=run.endpoint.api_key,
            temperature=request.temperature, top_p=request.top_p, max_tokens=request.max_tokens,
            include_usage=request.include_usage, extra_body=request.extra_body, timeouts=run.timeouts,
            client=client, resume=resume,
        )
        async with aclosing(arriving):
            async for delta in arriving:
                # the library gives a delta only from an HTTP 200 event stream
                record.status_code, record.content_type = 200, "text/event-stream"
                deltas.append(delta)
                tokens += delta.tokens
                if observer is not None:
                    observer.stream_delta(index, delta)
    except QwenopsError as exc:
        record.error = exc
        if isinstance(exc, HTTPStatusError) and not deltas:
            record.status_code = exc.status_code
            record.body = exc.body
            if exc.code == "unauthorized":
                exc.hint = _with_resume_reason(options.unauthorized_hint, exc.hint)
            elif exc.code == "model_not_found":
                hint = f"the server does not serve a model named {request.model!r}; pass the served name with --model"
                exc.hint = _with_resume_reason(hint, exc.hint)
        elif isinstance(exc, NotEventStream):
            record.status_code = 200
            exc.hint = "is --base-url the root of an OpenAI-compatible server such as vLLM (no /v1, no other path)?"
        elif not isinstance(exc, (UnreachableError, BadInputError)) and record.status_code is None:
            record.status_code, record.content_type = 200, "text/event-stream"  # cut before its first chunk
        if isinstance(exc, StreamInterrupted):
            exc.chunks = max(exc.chunks, tokens)
    return record


def _with_resume_reason(hint: str, library_hint: str | None) -> str:
    """smoke-stream's own fix, keeping the library's `not resumed: ...` reason."""
    reason = _not_resumed_reason(library_hint)
    return hint if reason is None else f"{hint}; not resumed: {reason}"


_NOT_RESUMED = "not resumed: "


def _not_resumed_reason(hint: str | None) -> str | None:
    """The reason the stream library gives for not resuming, from the end of its error's hint."""
    if not hint or _NOT_RESUMED not in hint:
        return None
    return hint.rsplit(_NOT_RESUMED, 1)[1]


def _tally(record: StreamRecord, reader: DeltaReader) -> DeltaReader:
    """`reader` once it has seen every recorded event (the one chunk decoder: tokens, text, [DONE])."""
    if reader.events < len(record.events):
        for timed in record.events[reader.events:]:
            reader.decode(timed.event.data, timed.arrived_s)
    return reader


# --------------------------------------------------------------------------------------------- judging


def build_report(
    options: SmokeOptions, records: Sequence[StreamRecord], wall_s: float, *, served: ServedModel = ServedModel()
) -> SmokeReport:
    """Judge and measure recorded streams (pure: the unit tests feed it recorded captures)."""
    answer, why = None, "no known answer to compare: sampling is not greedy, or --ignore-eos"
    if _comparable(options):
        if served.known_answers is None:
            why = served.why_unknown
        else:
            answer = served.known_answers.get(options.prompt)
            why = "the tiny model has no known answer to this prompt"
    expect = Expectations(
        model=options.model, include_usage=options.include_usage, known_answer=answer, no_answer_why=why
    )
    streams: list[StreamReport] = []
    for index, record in enumerate(records):
        parsed = parse_record(record)
        checks = check_stream(record, expect, parsed=parsed)
        deltas = parsed.deltas
        metrics = stream_metrics(deltas, sent_s=record.sent_s) if deltas else None
        error = record.error
        not_resumed = None
        if options.resume and error is not None:
            not_resumed = _not_resumed_reason(error.hint) or _NO_RESUME_TRIED.get(error.code, _NO_RESUME_OTHER)
        stream = StreamReport(
            index=index,
            ok=all(c.ok for c in checks),
            checks=tuple(checks),
            metrics=metrics,
            text="".join(d.content or d.reasoning_content for d in deltas),
            error=ErrorInfo.from_exception(error) if error is not None else None,
            partial_tokens=_partial_tokens(error, resume=options.resume),
            resumed=tuple(StreamResumed(after_tokens=r.after_tokens, gap_ms=r.gap_ms, attempt=r.attempt)
                          for r in parsed.resumed),
            not_resumed=not_resumed,
        )
        streams.append(stream)

    measured = [s.metrics for s in streams if s.metrics is not None]
    checks = [_combine(name, streams) for name in CHECK_NAMES]
    checks += _thresholds(options, measured)
    output_tokens = sum(m.output_tokens for m in measured)
    return SmokeReport(
        ok=all(c.ok for c in checks),
        base_url=redact_url(options.base_url),
        model=options.model,
        prompt=options.prompt,
        requests=options.requests,
        concurrency=options.concurrency,
        streams_ok=sum(s.ok for s in streams),
        checks=tuple(checks),
        ttft_s=median(m.ttft_s for m in measured),
        first_chunk_s=median(m.first_chunk_s for m in measured),
        first_reasoning_s=median(m.first_reasoning_s for m in measured),
        itl_s=Percentiles.of([gap for m in measured for gap in m.itl_s]),
        tpot_s=median(m.tpot_s for m in measured),
        e2e_s=median(m.e2e_s for m in measured),
        output_tokens=output_tokens,
        output_tokens_per_s=output_tokens / wall_s if wall_s > 0 and output_tokens else None,
        wall_s=wall_s,
        streams=tuple(streams),
        resume=options.resume,
        streams_resumed=sum(bool(s.resumed) for s in streams),
    )


# Why the stream library did not try to resume a failure it gives without a `not resumed:` reason.
_NO_RESUME_TRIED = {
    "client_timeout": "a read timeout is never resumed: a stalled engine may still be generating",
    "unreachable": "the first request was refused: a wrong or dead address is not a restart",
    "not_http": "the first request was refused: a wrong or dead address is not a restart",
    "runaway_stream": "the server ran past max_tokens: not a cut",
    "not_event_stream": "the answer was not an event stream: not a cut",
}
_NO_RESUME_OTHER = "not a cut the stream library resumes (only a cut, an in-band error or a 5xx is)"


def _partial_tokens(error: QwenopsError | None, *, resume: bool) -> int | None:
    """Tokens received before an interruption (with resume, over every request; an in-band error too)."""
    if isinstance(error, StreamInterrupted) or (resume and isinstance(error, InBandError)):
        return error.chunks
    return None


def _combine(name: str, streams: Sequence[StreamReport]) -> Check:
    """One check over all streams: it passes when it passed on every stream."""
    per_stream = [(s.index, next(c for c in s.checks if c.name == name)) for s in streams]
    failed = [(i, c) for i, c in per_stream if not c.ok]
    if failed:
        index, first = failed[0]
        detail = f"{len(failed)}/{len(streams)} streams failed; stream {index}: {first.detail}"
        return Check(name=name, ok=False, detail=detail)
    skipped = all(c.skipped for _, c in per_stream)
    detail = per_stream[0][1].detail
    if len(streams) > 1 and not skipped:
        detail = f"{len(streams)}/{len(streams)} streams; {detail}"
    return Check(name=name, ok=True, skipped=skipped, detail=detail)


def _thresholds(options: SmokeOptions, measured: Sequence[StreamMetrics]) -> list[Check]:
    checks = []
    if options.max_ttft_s is not None:
        ttfts = [m.ttft_s for m in measured if m.ttft_s is not None]
        worst = max(ttfts, default=None)
        ok = worst is not None and worst <= options.max_ttft_s and len(ttfts) == options.requests
        seen = f"worst {worst:.3f} s" if worst is not None else "no stream produced content"
        detail = f"{seen}, limit {options.max_ttft_s:g} s ({len(ttfts)}/{options.requests} streams measured)"
        checks.append(Check(name="max_ttft", ok=ok, detail=detail))
    if options.min_tokens_per_s is not None:
        rates = [m.output_tokens_per_s for m in measured if m.output_tokens_per_s is not None]
        slowest = min(rates, default=None)
        ok = slowest is not None and slowest >= options.min_tokens_per_s and len(rates) == options.requests
        seen = f"slowest stream {slowest:.1f} tokens/s" if slowest is not None else "no tokens"
        measured_of = f"{len(rates)}/{options.requests} streams measured"
        detail = f"{seen}, limit {options.min_tokens_per_s:g} ({measured_of})"
        checks.append(Check(name="min_tokens_per_s", ok=ok, detail=detail))
    return checks


# --------------------------------------------------------------------------------------------- JUnit


# What XML 1.0 cannot hold at all (ElementTree writes it anyway, and no parser then reads the file).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    """A check's detail, which can quote the server's words, for the JUnit file a CI server shows: no
    terminal controls, and nothing XML 1.0 forbids."""
    return _NOT_XML.sub("\ufffd", printable(text))


def write_junit(report: SmokeReport, path: Path) -> None:
    """JUnit XML for CI: one test case per check per stream, plus the run-level thresholds."""
    import xml.etree.ElementTree as ET

    from qwenops.atomicfile import write_atomic

    cases = [(f"smoke-stream.stream{s.index}", c) for s in report.streams for c in s.checks]
    cases += [("smoke-stream.thresholds", c) for c in report.checks if c.name not in CHECK_NAMES]
    suite = ET.Element(
        "testsuite",
        name="qwenops smoke-stream",
        tests=str(len(cases)),
        failures=str(sum(not c.ok for _, c in cases)),
        errors="0",
        skipped=str(sum(c.skipped for _, c in cases)),
        time=f"{report.wall_s:.3f}",
    )
    for classname, check in cases:
        case = ET.SubElement(suite, "testcase", classname=classname, name=check.name)
        detail = _xml_text(check.detail)
        if not check.ok:
            ET.SubElement(case, "failure", message=detail, type=check.name).text = detail
        elif check.skipped:
            ET.SubElement(case, "skipped", message=detail)
    suites = ET.Element("testsuites")
    suites.append(suite)
    ET.indent(suites)
    text = ET.tostring(suites, encoding="utf-8", xml_declaration=True).decode("utf-8")
    try:
        write_atomic(path, text, mode=0o644)  # a CI path, often in a shared directory: never through a link
    except OSError as exc:
        raise BadInputError(f"cannot write {path}: {exc.strerror or exc}", field="--junit") from None
