"""Active probes of a live server (`troubleshoot --probe`, never by default): one per FAQ row, each a few
real requests whose measurements become findings with the numbers in their evidence.

- interrupted: one long answer (the profile's max_tokens, ignore_eos) against the client timeout in use;
  a cut without `[DONE]` is told apart as a dead engine (/health) or a cut connection.
- incoherent: one ordinary answer, checked for loops (a word 4-gram that fills much of the text).
- out of memory: concurrency ramped 1, 2, 4 ... up to max_num_seqs, watching preemptions and KV cache
  use from /metrics: which limit binds first, and the max_num_seqs that keeps preemptions at zero.
- latency: the long answer's TTFT and TPOT, with the host's CPU contention (rules.host_findings).

Every request carries the configured server's key (config/target.py) and has a total deadline: each
answer the client's whole-answer timeout, each /health or /metrics read qwenops.httpread's. An HTTP
status is never taken for a cut connection: a 401/403 is an `auth` finding, another status or a body
that is not an event stream is `bad_answer` (or `proxy_answered` for an HTML page).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qwenops.vllmlog.classify import Evidence, Finding

if TYPE_CHECKING:
    from qwenops.config.target import ConfiguredServer
    from qwenops.errors import StreamError
    from qwenops.stream.metrics import TimedStream

PROMPT = "Tell me about the sea."
LOOP_NGRAM = 4
LOOP_SHARE = 0.3  # one 4-gram repeated over this share of an answer's words is a loop


@dataclass(frozen=True)
class Probed:
    """What the probes measured, for the report beside the findings."""

    long_answer_tokens: int | None
    long_answer_e2e_s: float | None
    ttft_s: float | None
    tpot_s: float | None
    ramp: tuple[tuple[int, float, float], ...]  # (concurrency, preemptions in that level, peak KV use)


def _evidence(text: str) -> tuple[Evidence, ...]:
    return (Evidence("probe", text),)


def _answer(server: ConfiguredServer, *, max_tokens: int, ignore_eos: bool, read_s: float,
            total_s: float) -> tuple[str, TimedStream]:
    from qwenops.config.target import url_and_key
    from qwenops.stream.client import Timeouts, stream_chat
    from qwenops.stream.metrics import TimedStream

    base_url, key = url_and_key(server)
    client = server.profile.client
    stream = TimedStream()
    text = ""
    for delta in stream_chat([{"role": "user", "content": PROMPT}], base_url=base_url, model=server.model,
                             api_key=key, temperature=client.temperature, top_p=client.top_p,
                             max_tokens=max_tokens, extra_body={"ignore_eos": True} if ignore_eos else None,
                             timeouts=Timeouts(connect_s=5, read_s=read_s, total_s=total_s)):
        stream.add(delta)
        text += delta.content
    return text, stream


def _health(server: ConfiguredServer) -> tuple[int | None, str]:
    """/health after a failed answer: its status (None: none in time) and what it answered, in words."""
    from qwenops.config.target import url_and_key
    from qwenops.errors import UnreachableError
    from qwenops.httpread import get

    url, key = url_and_key(server)
    try:
        reply = get(url, "/health", api_key=key)
    except UnreachableError as exc:
        return None, exc.message
    return reply.status, reply.describe()


def answer_failed(exc: StreamError, server: ConfiguredServer) -> Finding:
    """What a failed answer shows. Only a connection cut before [DONE] while /health says 200 is a cut
    connection; an HTTP status is the server's answer, and the evidence names it."""
    from qwenops.errors import HTTPStatusError, NotEventStream, StreamInterrupted
    from qwenops.troubleshoot.live import auth_fix

    if isinstance(exc, HTTPStatusError) and exc.status_code in (401, 403):
        state = server.key_state()
        sent = server.bearer is not None
        return Finding("auth", "error", "the server refuses qwenops' requests: an API key problem",
                       (*_evidence(exc.message), Evidence("qwenops", state)), auth_fix(exc.status_code, state, sent))
    if isinstance(exc, NotEventStream) and "HTML page" in exc.message:
        return Finding("proxy_answered", "error", "something in front of the server answered, not vLLM",
                       _evidence(exc.one_line()),
                       "a login proxy or another web server answers at this URL: point --base-url (or "
                       "QWENOPS_BASE_URL) at vLLM's own host and port, or let the proxy pass /v1/ through")
    health, seen = _health(server)
    if health is None or health >= 500:
        return Finding("engine_dead", "error", "the engine died while answering",
                       _evidence(f"{exc.one_line()}; then /health answered {seen}"),
                       "read the server's log for the first error (`qwenops troubleshoot --journal UNIT`)",
                       retryable=True)
    if isinstance(exc, StreamInterrupted) and health == 200:
        return Finding("stream_interrupted", "error", "the connection was cut while the engine is healthy",
                       _evidence(f"{exc.one_line()}; /health 200"),
                       "something between client and server cuts long streams: a proxy's read or idle timeout "
                       "(nginx proxy_read_timeout, a load balancer's idle timeout), or the client's total "
                       "timeout; raise it above the longest answer")
    return Finding("bad_answer", "error", "the server answered the probe's request, but not with an answer",
                   _evidence(f"{exc.one_line()}; /health answered {seen}"),
                   exc.hint or "read what the server answered above: the request was refused or the answer was "
                               "not an event stream, which no timeout or proxy setting changes")


TIMEOUT_MARGIN = 1.5  # the timeout to set: the measured answer's time with this margin
MEASURE_CAP_S = 600.0  # how long the probe waits, at most, to measure an answer the client's timeout cut


def timeout_to_set(e2e_s: float) -> int:
    """The client timeout a fix names: the measured answer time with TIMEOUT_MARGIN, in whole seconds."""
    return max(1, math.ceil(e2e_s * TIMEOUT_MARGIN))


def probe_interrupted(server: ConfiguredServer, client_timeout_s: float) -> tuple[list[Finding], Probed]:
    """One long answer within the client's timeout. One that the timeout cuts is measured again without
    it (up to MEASURE_CAP_S), so the fix names the timeout that covers it, not just "raise it"."""
    from qwenops.errors import StreamError, StreamTimeout

    tokens = server.profile.client.max_tokens
    try:
        _, stream = _answer(server, max_tokens=tokens, ignore_eos=True, read_s=client_timeout_s,
                            total_s=client_timeout_s)
    except StreamTimeout as exc:
        return _timed_out(server, client_timeout_s, exc)
    except StreamError as exc:
        return [answer_failed(exc, server)], Probed(None, None, None, None, ())
    probed = _probed(stream)
    found: list[Finding] = []
    if probed.long_answer_e2e_s is not None and probed.long_answer_e2e_s > 0.8 * client_timeout_s:
        e2e = probed.long_answer_e2e_s
        found.append(Finding(
            "client_timeout", "warning", "a full answer takes nearly as long as the client timeout",
            _evidence(f"{probed.long_answer_tokens} tokens in {e2e:.1f} s; client timeout {client_timeout_s:g} s"),
            f"the article's row: raise the client's total timeout above {timeout_to_set(e2e)} s (this answer took "
            f"{e2e:.1f} s, x{TIMEOUT_MARGIN:g}), or lower client.max_tokens; streaming clients should time out on "
            f"the gap between tokens, not the whole answer"))
    return found, probed


def _probed(stream: TimedStream) -> Probed:
    metrics = stream.metrics()
    return Probed(metrics.output_tokens, metrics.e2e_s, metrics.ttft_s, metrics.tpot_s, ())


def _timed_out(server: ConfiguredServer, client_timeout_s: float, exc: StreamError) -> tuple[list[Finding], Probed]:
    from qwenops.errors import StreamError

    tokens = server.profile.client.max_tokens
    cap = max(MEASURE_CAP_S, client_timeout_s)
    try:
        _, stream = _answer(server, max_tokens=tokens, ignore_eos=True, read_s=cap, total_s=cap)
    except StreamError as again:
        return [Finding("client_timeout", "error", "no answer came within the client timeout",
                        _evidence(f"{exc.one_line()}; measured without it: {again.one_line()}"),
                        f"the server did not finish a {tokens}-token answer within {cap:g} s either: check "
                        f"`qwenops status` for a queue and the server's log; then raise the client's timeout above "
                        f"the answer's time")], Probed(None, None, None, None, ())
    probed = _probed(stream)
    e2e = probed.long_answer_e2e_s or 0.0
    return [Finding(
        "client_timeout", "error", "an answer takes longer than the client timeout",
        (*_evidence(exc.one_line()),
         *_evidence(f"measured without it: {probed.long_answer_tokens} tokens in {e2e:.1f} s; client timeout "
                    f"{client_timeout_s:g} s")),
        f"raise the client timeout above {timeout_to_set(e2e)} s (`--client-timeout {timeout_to_set(e2e)}`, "
        f"client.timeout_s; the answer took {e2e:.1f} s, x{TIMEOUT_MARGIN:g}), or lower max_tokens "
        f"(client.max_tokens {tokens}) so answers end sooner; streaming clients should time out on the gap "
        f"between tokens, not the whole answer")], probed


def probe_incoherent(server: ConfiguredServer) -> list[Finding]:
    from qwenops.errors import StreamError

    client = server.profile.client
    try:
        text, _ = _answer(server, max_tokens=client.max_tokens, ignore_eos=False, read_s=60, total_s=client.timeout_s)
    except StreamError as exc:
        return [answer_failed(exc, server)]
    words = text.split()
    grams = Counter(tuple(words[i:i + LOOP_NGRAM]) for i in range(max(len(words) - LOOP_NGRAM + 1, 0)))
    if not grams:
        return []
    gram, count = grams.most_common(1)[0]
    if count < 3 or count * LOOP_NGRAM < LOOP_SHARE * len(words):
        return []
    return [Finding(
        "incoherent_output", "warning", "the answer loops",
        _evidence(f"{' '.join(gram)!r} {count} times in {len(words)} words"),
        "loops come from greedy or near-greedy sampling and from prompts cut by max_model_len: use Qwen3's "
        "sampling (temperature 0.7, top_p 0.8, presence_penalty 1.5 against repetition), and check that "
        "prompt + max_tokens fits max_model_len")]


def probe_memory(server: ConfiguredServer) -> tuple[list[Finding], tuple[tuple[int, float, float], ...]]:
    """Ramp concurrency to max_num_seqs (the profile's), at most MAX_PROBE_CONCURRENCY (one thread and one
    connection per answer: a max_num_seqs of a million was a million of each); stop at the first level that
    preempts."""
    from qwenops.untrusted import MAX_PROBE_CONCURRENCY

    wanted = server.profile.max_num_seqs or 256
    limit = min(wanted, MAX_PROBE_CONCURRENCY)
    levels = sorted({*(2**k for k in range(limit.bit_length()) if 2**k < limit), limit})
    ramp: list[tuple[int, float, float]] = []
    safe = 0
    for level in levels:
        preempted, peak = _level(server, level)
        ramp.append((level, preempted, peak))
        if preempted > 0:
            return [Finding(
                "kv_cache_preemption", "warning", f"the KV cache binds first: {level} concurrent answers preempt",
                _evidence(f"concurrency {level}: {preempted:g} preemptions, KV cache peak {peak:.0%}"),
                f"set max_num_seqs to {max(safe, 1)} (`--set max_num_seqs={max(safe, 1)}`): that many ran without "
                f"a preemption; or give the cache more memory (gpu_memory_utilization, a smaller checkpoint, "
                f"a shorter max_model_len) — the article's OOM row, measured")], tuple(ramp)
        safe = level
    top = ramp[-1] if ramp else (0, 0.0, 0.0)
    if limit < wanted:
        return [Finding(
            "memory_headroom", "info", f"no preemption up to {limit} concurrent answers, the most the probe sends",
            _evidence(f"concurrency {top[0]}: no preemption, KV cache peak {top[2]:.0%} (max_num_seqs {wanted})"),
            "the cache has room for this many answers at these lengths; `qwenops status` under real load shows "
            "whether more preempt")], tuple(ramp)
    return [Finding(
        "memory_headroom", "info", "max_num_seqs binds before the KV cache",
        _evidence(f"concurrency {top[0]} (max_num_seqs): no preemption, KV cache peak {top[2]:.0%}"),
        "the cache has room for this batch at these answer lengths; raise max_num_seqs only if requests "
        "queue (`qwenops status` shows waiting requests)")], tuple(ramp)


def _level(server: ConfiguredServer, level: int) -> tuple[float, float]:
    """LEVEL answers at once: the preemptions they caused, and the KV cache use at its peak meanwhile
    (a counter that went backwards, a restart, counts as no preemption seen, not a negative number)."""
    from qwenops.troubleshoot.live import scrape_metrics

    before = scrape_metrics(server)
    peak = 0.0
    workers = [threading.Thread(target=_quiet_answer, args=(server,), daemon=True) for _ in range(level)]
    for worker in workers:
        worker.start()
    while any(worker.is_alive() for worker in workers):
        peak = max(peak, scrape_metrics(server).gauges.get("kv_cache_usage", 0.0))
        time.sleep(0.2)
    after = scrape_metrics(server)
    return max(after.counters.get("preemptions", 0.0) - before.counters.get("preemptions", 0.0), 0.0), peak


def _quiet_answer(server: ConfiguredServer) -> None:
    from qwenops.errors import QwenopsError

    client = server.profile.client
    with contextlib.suppress(QwenopsError):  # the ramp reads the server's counters; a failure shows there too
        _answer(server, max_tokens=client.max_tokens, ignore_eos=True, read_s=120, total_s=client.timeout_s)


def probe_latency(probed: Probed, host_contended: bool) -> list[Finding]:
    if probed.ttft_s is None or probed.tpot_s is None:
        return []
    measured = f"TTFT {probed.ttft_s * 1000:.0f} ms, TPOT {probed.tpot_s * 1000:.1f} ms for one answer alone"
    if host_contended:
        return [Finding("high_latency_cpu", "warning", "latency measured while other processes load the CPU",
                        _evidence(measured), "see the CPU finding above: free a core for vLLM and probe again")]
    return [Finding("latency", "info", "latency of one answer on a quiet host (the engine's own speed)",
                    _evidence(measured), "compare with `qwenops status` under load: a gap is queueing, not the engine")]
