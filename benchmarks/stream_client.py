"""Streaming client benchmarks, measured side by side in one run.

    python benchmarks/stream_client.py parse    [--chunks 20000] [--runs 7]
    python benchmarks/stream_client.py agree    --base-url http://127.0.0.1:8000 [--requests 50]
    python benchmarks/stream_client.py overhead [--requests 200]

(a) parse: chunks/s of `qwenops.stream.stream_chat` against a local synthetic server that sends
    pre-built vLLM chunks as fast as the socket takes them, next to the official `openai` client
    (pip install 'qwenops[bench]') streaming the same bytes. The client runs pinned to one core, the
    server in another process on the other. Runs alternate between clients so noise hits both alike.
    Goal: qwenops >= 2x openai.
(b) agree: against a real vLLM server, each client's TTFT for each request next to vLLM's own
    server-side value for that request (the change of `vllm:time_to_first_token_seconds_sum` across
    it; requests one at a time, clients interleaved, so each change is one request of one client), and
    smoke-stream's TPOT next to `vllm:request_time_per_output_token_seconds`. The clients: smoke-stream's
    own recording path (`qwenops.smoke.run._record_stream`, what `qwenops smoke-stream` measures), `vllm bench
    serve`'s request function (`vllm.benchmarks.lib.endpoint_request_func`, called as a library with an
    aiohttp session as the benchmark does; left out where vLLM is not installed) and a raw asyncio socket
    client (the floor). Goal: medians within 5 ms of vLLM's, and smoke-stream's gap no larger than the
    peer's.
(c) overhead: the client's own share of TTFT, without an engine's noise: a local server in another
    process answers each request at once (headers at once, the first chunks 2 ms later, as a prefill)
    and stamps, on the same monotonic clock, when the request had fully arrived and when it wrote the
    first chunk; the clients above stamp when they sent and when they saw it. Send side = request in -
    sent; receive side = first chunk seen - first chunk written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from qwenops.stream import stream_chat

MODEL = "Qwen3-14B"
PROMPT = "Tell me about the sea."
MESSAGES = [{"role": "user", "content": PROMPT}]


# --------------------------------------------------------------------------------------------- (a) parse


def build_body(chunks: int) -> bytes:
    """A vLLM 0.32 stream (the chunk shape of tests/data/sse captures) with `chunks` content chunks."""
    words = ["The", " sea", " is", " wide", " and", " deep", ".", " Waves", " roll", " in", ","]
    base = {"id": "chatcmpl-8ab73e6bcc37cab6", "object": "chat.completion.chunk", "created": 1795622669,
            "model": MODEL}
    parts = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                   "finish_reason": None}], "prompt_token_ids": None}]
    for i in range(chunks):
        parts.append({**base, "choices": [{"index": 0, "delta": {"content": words[i % len(words)]},
                                           "logprobs": None, "finish_reason": None, "token_ids": None}]})
    parts.append({**base, "choices": [{"index": 0, "delta": {"content": ""}, "logprobs": None,
                                       "finish_reason": "length", "stop_reason": None, "token_ids": None}]})
    parts.append({**base, "choices": [], "usage": {"prompt_tokens": 14, "total_tokens": 14 + chunks + 1,
                                                   "completion_tokens": chunks + 1}})
    events = b"".join(b"data: " + json.dumps(p, separators=(",", ":")).encode() + b"\n\n" for p in parts)
    return events + b"data: [DONE]\n\n"


def serve_forever(sock: socket.socket, body: bytes) -> None:
    """Answer every connection with the same stream: headers, then the body in one sendall."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {(os.cpu_count() or 1) - 1})  # the last CPU; the client takes CPU 0
    head = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"cache-control: no-cache\r\nconnection: close\r\n\r\n")
    while True:
        conn, _ = sock.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            header, _, rest = request.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in header.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(rest) < length:
                rest += conn.recv(65536)
            conn.sendall(head + body)


def make_qwenops(base_url: str) -> Callable[[str], int]:
    import httpx

    client = httpx.Client()  # one connection pool for all runs, as the openai client keeps its own

    def run(_: str) -> int:
        count = 0
        for delta in stream_chat(MESSAGES, base_url=base_url, model=MODEL, temperature=0.0, top_p=1.0,
                                 max_tokens=10**6, client=client):
            count += bool(delta.content) or delta.finish_reason is not None
        return count

    return run


def make_openai(base_url: str) -> Callable[[str], int]:
    from openai import OpenAI
    from openai.types.chat import ChatCompletionMessageParam

    client = OpenAI(base_url=base_url + "/v1", api_key="none", max_retries=0)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": PROMPT}]

    def run(_: str) -> int:
        count = 0
        stream = client.chat.completions.create(model=MODEL, messages=messages,
                                                stream=True, max_tokens=10**6)
        for chunk in stream:
            if chunk.choices:
                count += bool(chunk.choices[0].delta.content) or chunk.choices[0].finish_reason is not None
        return count

    return run


def bench_parse(chunks: int, runs: int) -> None:
    body = build_body(chunks)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = multiprocessing.get_context("fork").Process(target=serve_forever, args=(sock, body), daemon=True)
    server.start()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    try:
        clients: dict[str, Callable[[str], int]] = {"qwenops stream_chat": make_qwenops(base_url)}
        try:
            clients["openai (official)"] = make_openai(base_url)
        except ImportError:
            print("openai is not installed (pip install 'qwenops[bench]'): measuring qwenops alone")
        for run in clients.values():  # warm-up: imports, first connection
            assert run(base_url) == chunks + 1
        times: dict[str, list[float]] = {name: [] for name in clients}
        for _ in range(runs):
            for name, run in clients.items():
                start = time.perf_counter()
                seen = run(base_url)
                times[name].append(time.perf_counter() - start)
                assert seen == chunks + 1, (name, seen)
    finally:
        server.kill()
    print(f"\n(a) parsing throughput: {chunks} chunks ({len(body) / 1e6:.1f} MB) per stream, {runs} runs each, "
          f"client on one core")
    print(f"{'client':<22} {'median s':>9} {'chunks/s':>11} {'ratio':>7}")
    medians = {name: statistics.median(values) for name, values in times.items()}
    reference = medians.get("openai (official)")
    for name, median_s in medians.items():
        ratio = f"{reference / median_s:.2f}x" if reference else "-"
        print(f"{name:<22} {median_s:>9.3f} {chunks / median_s:>11,.0f} {ratio:>7}")


# --------------------------------------------------------------------------------------------- (b) agree


def server_sums(client: object, base_url: str) -> dict[str, float]:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    assert isinstance(client, httpx.Client)
    text = client.get(base_url + "/metrics").text
    wanted = {"vllm:time_to_first_token_seconds", "vllm:request_time_per_output_token_seconds"}
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name in wanted:
            for sample in family.samples:
                if sample.name.endswith("_sum") or sample.name.endswith("_count"):
                    sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    return sums


# One measured request: (sent, first chunk with choices seen, first content seen, last token seen, TPOT or
# None), perf_counter. A client returns it as a thunk, so that working it out is not done while other
# streams are being read.
Timed = tuple[float, float, float, float, "float | None"]
Client = Callable[[], Awaitable[Callable[[], Timed]]]


def smoke_client(base_url: str, max_tokens: int) -> tuple[Client, Callable[[], Awaitable[None]]]:
    """What `qwenops smoke-stream` measures: its own recording path on one shared httpx pool."""
    import httpx

    from qwenops.smoke.run import SmokeOptions, _plan, _record_stream
    from qwenops.stream.conformance import parse_record
    from qwenops.stream.metrics import stream_metrics

    run = _plan(SmokeOptions(base_url=base_url, model=MODEL, prompt=PROMPT, max_tokens=max_tokens), None)
    http = httpx.AsyncClient()

    async def one() -> Callable[[], Timed]:
        record = await _record_stream(http, run, 0)
        assert record.error is None, record.error

        def timed() -> Timed:  # as smoke-stream does it: judged and measured once the streams are done
            metrics = stream_metrics(parse_record(record).deltas, sent_s=record.sent_s)
            assert metrics.first_chunk_s is not None and metrics.ttft_s is not None and metrics.e2e_s is not None
            sent = record.sent_s
            return sent, sent + metrics.first_chunk_s, sent + metrics.ttft_s, sent + metrics.e2e_s, metrics.tpot_s

        return timed

    return one, http.aclose


def vllm_bench_client(base_url: str, max_tokens: int) -> tuple[Client, Callable[[], Awaitable[None]]]:
    """`vllm bench serve`'s own request function, with an aiohttp session as the benchmark makes one."""
    import aiohttp
    from vllm.benchmarks.lib.endpoint_request_func import RequestFuncInput, async_request_openai_chat_completions

    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600))
    asked = RequestFuncInput(prompt=PROMPT, api_url=base_url + "/v1/chat/completions", prompt_len=0,
                             output_len=max_tokens, model=MODEL,
                             extra_body={"temperature": 0.0, "top_p": 1.0, "return_token_ids": True})

    async def one() -> Callable[[], Timed]:
        out = await async_request_openai_chat_completions(asked, session)
        assert out.success, out.error
        first = out.start_time + out.ttft  # its TTFT: the first chunk with choices (vLLM's role chunk)
        return lambda: (out.start_time, first, first, out.start_time + out.latency, None)

    return one, session.close


def raw_client(base_url: str, max_tokens: int) -> tuple[Client, Callable[[], Awaitable[None]]]:
    """The floor: one prepared request written to a kept-alive socket, the reply scanned for bytes."""
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    body = json.dumps({"model": MODEL, "messages": MESSAGES, "stream": True, "max_tokens": max_tokens,
                       "temperature": 0.0, "top_p": 1.0, "stream_options": {"include_usage": True},
                       "return_token_ids": True}).encode()
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: {parts.netloc}\r\ncontent-type: application/json\r\n"
               f"content-length: {len(body)}\r\n\r\n").encode() + body
    conn: dict[str, Any] = {}

    async def one() -> Callable[[], Timed]:
        if not conn:
            conn["r"], conn["w"] = await asyncio.open_connection(parts.hostname, parts.port)
        reader, writer = conn["r"], conn["w"]
        sent = time.perf_counter()
        writer.write(request)
        buffer, first, content, last = b"", 0.0, 0.0, 0.0
        while b"\r\n0\r\n\r\n" not in buffer:  # the end of the chunked body
            data = await reader.read(65536)
            now = time.perf_counter()
            if not data:
                raise ConnectionError("closed")
            buffer += data
            compact = buffer.replace(b'": ', b'":')
            if not first and b'"choices":[{' in compact:
                first = now
            if not content and b'"content":"' in compact.replace(b'"content":""', b""):
                content = now
            if not last and b'"finish_reason":"' in compact:
                last = now
        return lambda: (sent, first, content, last, None)

    async def close() -> None:
        if conn:
            conn["w"].close()

    return one, close


def make_clients(base_url: str, max_tokens: int) -> dict[str, tuple[Client, Callable[[], Awaitable[None]]]]:
    clients = {"qwenops smoke-stream": smoke_client(base_url, max_tokens)}
    try:
        clients["vllm bench serve"] = vllm_bench_client(base_url, max_tokens)
    except ImportError:
        print("vLLM is not installed here: comparing with the raw socket client only")
    clients["raw asyncio socket"] = raw_client(base_url, max_tokens)
    return clients


def bench_agree(base_url: str, requests: int, max_tokens: int, settle_s: float) -> None:
    import httpx

    ttft_key, tpot_key = "vllm:time_to_first_token_seconds", "vllm:request_time_per_output_token_seconds"
    # per request: client TTFT to the first chunk and to the first content, vLLM's TTFT, whether it streamed,
    # client TPOT, vLLM's TPOT
    rows: dict[str, list[tuple[float, float, float, bool, float | None, float]]] = {}

    async def main(http: httpx.Client) -> None:
        clients = make_clients(base_url, max_tokens)
        try:
            for one, _ in clients.values():  # warm-up: imports, connections
                await one()
            for _ in range(requests):
                for name, (one, _) in clients.items():
                    before = server_sums(http, base_url)
                    await asyncio.sleep(settle_s)  # let the server finish serving /metrics
                    sent, first, content, last, tpot = (await one())()
                    after = server_sums(http, base_url)
                    assert after[ttft_key + "_count"] - before[ttft_key + "_count"] == 1, "another client used it"
                    server_ttft = after[ttft_key + "_sum"] - before[ttft_key + "_sum"]
                    server_tpot = after[tpot_key + "_sum"] - before[tpot_key + "_sum"]
                    # A "burst" answer reached the socket all at once at the end instead of token by token
                    streamed = last - first >= 0.005
                    rows.setdefault(name, []).append((first - sent, content - sent, server_ttft, streamed,
                                                      tpot, server_tpot))
        finally:
            for _, close in clients.values():
                await close()

    with httpx.Client(timeout=60) as http:
        asyncio.run(main(http))
    ms = 1000.0
    print(f"\n(b) TTFT agreement: {requests} requests per client, one at a time, clients interleaved, {base_url}, "
          f"max_tokens {max_tokens}; medians in ms")
    print(f"{'client':<22} {'answers':<14} {'TTFT (first chunk)':>19} {'vLLM TTFT':>10} {'diff':>7} "
          f"{'p50 of diff per request':>24} {'TTFT (first content)':>21}")
    for name, rows_of in rows.items():
        streamed = [r for r in rows_of if r[3]]
        for group, subset in ((f"all ({len(rows_of)})", rows_of), (f"streamed ({len(streamed)})", streamed)):
            if not subset:
                continue
            ours = statistics.median(r[0] for r in subset) * ms
            theirs = statistics.median(r[2] for r in subset) * ms
            per_request = statistics.median(r[0] - r[2] for r in subset) * ms
            content = statistics.median(r[1] for r in subset) * ms
            print(f"{name:<22} {group:<14} {ours:>19.2f} {theirs:>10.2f} {ours - theirs:>7.2f} {per_request:>24.2f} "
                  f"{content:>21.2f}")
    # A burst answer's tokens all arrive in one read after generation ended: the API server process was
    # starved of CPU while the engine generated. vLLM's histograms are stamped before that wait, so they
    # cannot show it; the client's numbers can. Both groups are printed.
    smoke = rows["qwenops smoke-stream"]
    streamed = [r for r in smoke if r[3]]
    for group, subset in ((f"all ({len(smoke)})", smoke), (f"streamed ({len(streamed)})", streamed)):
        if subset:
            ours = statistics.median(r[4] or 0.0 for r in subset) * ms
            theirs = statistics.median(r[5] for r in subset) * ms
            print(f"TPOT, smoke-stream, {group:<14} smoke-stream {ours:.2f}  vLLM {theirs:.2f}  "
                  f"diff {ours - theirs:.2f}")


# --------------------------------------------------------------------------------------------- (c) overhead


PREFILL_S = 0.002


def stamping_server(sock: socket.socket, stamps: Any) -> None:
    """Keep-alive HTTP/1.1: each request answered at once with a short vLLM-shaped stream (the headers at
    once, the first chunks 2 ms later, the rest at once); for each, the time its last byte was read and
    the time the first chunk was written go to `stamps`."""
    import contextlib

    head = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"transfer-encoding: chunked\r\n\r\n")
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": MODEL}

    def event(chunk: object) -> bytes:
        data = b"data: " + (chunk if isinstance(chunk, bytes) else json.dumps(chunk).encode()) + b"\n\n"
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    first = event({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}) + event(
        {**base, "choices": [{"index": 0, "delta": {"content": "The"}, "token_ids": [1]}]})
    rest = b"".join(event({**base, "choices": [{"index": 0, "delta": {"content": " sea"}, "token_ids": [2]}]})
                    for _ in range(6))
    rest += event({**base, "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop",
                                        "token_ids": [3]}]})
    rest += event({**base, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13}})
    rest += event(b"[DONE]") + b"0\r\n\r\n"

    def serve(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = b""
        with conn, contextlib.suppress(OSError):
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                header, _, buffer = buffer.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in header.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                buffer = buffer[length:]
                arrived = time.perf_counter()
                conn.sendall(head)  # as vLLM: the headers at once, the first token after the prefill
                time.sleep(PREFILL_S)
                conn.sendall(first)
                written = time.perf_counter()
                stamps.put((arrived, written))
                conn.sendall(rest)

    import threading

    while True:
        conn, _ = sock.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def bench_overhead(requests: int, concurrency: int) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    context = multiprocessing.get_context("fork")
    stamps = context.SimpleQueue()
    server = context.Process(target=stamping_server, args=(sock, stamps), daemon=True)
    server.start()
    rows: dict[str, list[tuple[float, float, float]]] = {}

    async def main() -> None:
        # One client object per concurrent stream (the raw one holds one socket); same for all clients.
        clients = [make_clients(base_url, 8) for _ in range(concurrency)]
        try:
            for group in clients:
                for one, _ in group.values():
                    await one()
                    stamps.get()
            for _ in range(requests // concurrency):
                for name in clients[0]:
                    thunks = await asyncio.gather(*(group[name][0]() for group in clients))
                    timed = [thunk() for thunk in thunks]
                    seen = sorted(stamps.get() for _ in timed)
                    for (sent, first, *_), (arrived, written) in zip(sorted(timed), seen, strict=True):
                        # one at a time, stamps pair with requests exactly; at once, only TTFT is exact
                        rows.setdefault(name, []).append((arrived - sent, first - written, first - sent))
        finally:
            for group in clients:
                for _, close in group.values():
                    await close()

    try:
        asyncio.run(main())
    finally:
        server.kill()
    us = 1e6
    print(f"\n(c) client overhead: {requests} requests per client, {concurrency} at a time, against a server that "
          "answers at once (another process); medians in microseconds")
    if concurrency == 1:
        print(f"{'client':<22} {'sent -> request in':>19} {'first written -> seen':>22} {'TTFT (first chunk)':>19}")
    else:
        print(f"{'client':<22} {'TTFT (first chunk)':>19} {'p90':>8}")
    for name, subset in rows.items():
        cols = [statistics.median(r[i] for r in subset) * us for i in range(3)]
        if concurrency == 1:
            print(f"{name:<22} {cols[0]:>19.0f} {cols[1]:>22.0f} {cols[2]:>19.0f}")
        else:
            p90 = statistics.quantiles([r[2] for r in subset], n=10)[-1] * us
            print(f"{name:<22} {cols[2]:>19.0f} {p90:>8.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="which", required=True)
    parse = sub.add_parser("parse", help="(a) parsing throughput vs the openai client")
    parse.add_argument("--chunks", type=int, default=20000)
    parse.add_argument("--runs", type=int, default=7)
    agree = sub.add_parser("agree", help="(b) TTFT/TPOT of smoke-stream and vllm bench serve vs vLLM's /metrics")
    agree.add_argument("--base-url", required=True)
    agree.add_argument("--requests", type=int, default=50)
    agree.add_argument("--max-tokens", type=int, default=64)
    agree.add_argument("--settle", type=float, default=0.0, help="seconds between reading /metrics and the request")
    overhead = sub.add_parser("overhead", help="(c) each client's own share of TTFT, against an instant server")
    overhead.add_argument("--requests", type=int, default=200)
    overhead.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    if args.which == "parse":
        bench_parse(args.chunks, args.runs)
    elif args.which == "agree":
        bench_agree(args.base_url, args.requests, args.max_tokens, args.settle)
    else:
        bench_overhead(args.requests, args.concurrency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
