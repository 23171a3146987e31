"""The gateway's cost, side by side in one run, against a synthetic upstream (tests/synthetic_upstream.py,
its own process) that streams as fast as the socket takes it.

    python benchmarks/gateway.py [--tokens 200] [--levels 1,16,64] [--idle 1000] [--quick] [--baseline DIR]

Each delta's content is `time.monotonic_ns()` when the upstream wrote it (CLOCK_MONOTONIC is one clock
for every process on Linux); the client stamps when it read it. Per-token latency = read - written, for:
- direct:  the SSE stream read by `qwenops.stream.astream_chat` (the floor);
- gateway: the same chats through `qwenops gateway` (its own process), one WebSocket per chat;
- floor:   the least a relay in the gateway's process model can do (FLOOR_APP below: Starlette under
  uvicorn, uvloop, the same WebSocket library, httpx to the upstream, its own process): each SSE `data:`
  payload forwarded as one text frame, no JSON work, no state beyond the connection;
- article: the reference article's handler, the same way: `requests.post(..., stream=True)` and
  `iter_lines()` inside `async def`, `except: continue` (reimplemented below as written there).
Added latency = percentile(via X) - percentile(direct), at 1, 16 and 64 concurrent chats, twice: with
the upstream writing as fast as the socket takes it (every process saturated: latency is then mostly
queueing on 2 cores), and paced like an engine (one token every --interval-ms per chat, 20 ms = 50 tokens/s,
a 4090D's TPOT for Qwen3-14B AWQ at low batch), where latency is the relay's own cost. Also: how long
a WebSocket ping on another connection waits while 64 chats stream, and the gateway's memory (RSS) for
1,000 idle connections. Goals (issue 12): p50 <= 1 ms and p99 <= 5 ms added at 64 chats; 1,000 idle
connections under 100 MB.
CPU per relayed token, for each relay: its process's CPU time (user + system, psutil) over each level's
runs, divided by the tokens its clients received in them (connection set-up included, as in a real
chat). Goal (issue 12): the gateway's <= 2x the floor's, judged at the top level of each mode.
--baseline DIR runs a second gateway from another checkout's qwenops/ (e.g. `git archive COMMIT qwenops configs
| tar -x -C DIR`) beside the others, as "before", so a change is measured against its base in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import psutil  # noqa: E402

from qwenops.stream import astream_chat  # noqa: E402

ARTICLE_APP = '''
import json, requests
from fastapi import FastAPI, WebSocket
app = FastAPI()
UPSTREAM = "{upstream}/v1/chat/completions"

@app.websocket("/ws/chat")
async def websocket_chat(websocket: WebSocket):
    await websocket.accept()
    while True:
        data = await websocket.receive_text()
        payload = {{"model": "m", "messages": [{{"role": "user", "content": data}}], "stream": True}}
        response = requests.post(UPSTREAM, json=payload, stream=True)   # blocking, inside async def
        for line in response.iter_lines():
            if line:
                line = line.decode("utf-8")
                if line.startswith("data: "):
                    chunk = line[6:]
                    if chunk == "[DONE]":
                        break
                    try:
                        content = json.loads(chunk)["choices"][0]["delta"].get("content", "")
                        if content:
                            await websocket.send_text(content)
                    except:  # noqa: E722  (as written in the article)
                        continue
'''

FLOOR_APP = '''
import json, httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect
UPSTREAM = "{upstream}/v1/chat/completions"
HTTP = httpx.AsyncClient(limits=httpx.Limits(max_connections=None), timeout=None)

async def chat(websocket):
    await websocket.accept()
    try:
        while True:
            prompt = await websocket.receive_text()
            body = json.dumps({{"model": "m", "messages": [{{"role": "user", "content": prompt}}], "stream": True}})
            async with HTTP.stream("POST", UPSTREAM, content=body,
                                   headers={{"content-type": "application/json"}}) as response:
                rest = b""
                async for chunk in response.aiter_bytes():
                    *events, rest = (rest + chunk).split(b"\\n\\n")
                    for event in events:
                        if event.startswith(b"data: "):
                            await websocket.send_text(event[6:].decode())
    except WebSocketDisconnect:
        pass

app = Starlette(routes=[WebSocketRoute("/ws/chat", chat), Route("/healthz", lambda request: PlainTextResponse("ok"))])
'''

UPSTREAM = '''
import sys, time
sys.path.insert(0, {repo!r})
from tests.synthetic_upstream import SyntheticUpstream
up = SyntheticUpstream().start()
print(up.port, flush=True)
while True:
    time.sleep(3600)
'''


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def process(argv: list[str], *, ready_url: str | None = None,
            cwd: Path = REPO) -> Iterator[subprocess.Popen[str] | None]:
    """ARGV run in CWD (its qwenops/ first on the path), killed at the end; None when ARGV is empty."""
    if not argv:
        yield None
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(cwd), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True, cwd=cwd, env=env)
    try:
        if ready_url is not None:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, f"{argv[:4]} exited"
                assert time.monotonic() < deadline, f"{ready_url} did not answer"
                with contextlib.suppress(httpx.HTTPError):
                    httpx.get(ready_url, timeout=2)
                    break
                time.sleep(0.1)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def ns_latencies(contents: list[str], arrived: list[int]) -> list[float]:
    return [(seen - int(text)) / 1e6 for text, seen in zip(contents, arrived, strict=True)]


PACE = {"s": 0.0}  # seconds between one chat's tokens; 0: as fast as the socket takes them


def prompt_for(tokens: int) -> str:
    return f"stamp {tokens} {PACE['s']}" if PACE["s"] else f"stamp {tokens}"


SHARED: dict[str, httpx.AsyncClient] = {}  # direct chats share one pool, as the gateway's chats do


async def direct_chat(base_url: str, tokens: int) -> tuple[list[float], float]:
    contents, arrived, started = [], [], time.monotonic_ns()
    async for delta in astream_chat([{"role": "user", "content": prompt_for(tokens)}], base_url=base_url, model="m",
                                    client=SHARED.get("direct")):
        if delta.content:
            arrived.append(time.monotonic_ns())
            contents.append(delta.content)
    return ns_latencies(contents, arrived), (arrived[0] - started) / 1e6


def ws_connect(url: str) -> Any:
    from websockets.asyncio.client import connect

    return connect(url, proxy=None, compression=None, max_size=None, open_timeout=30)


async def gateway_chat(url: str, tokens: int) -> tuple[list[float], float]:
    contents, arrived = [], []
    async with ws_connect(url) as ws:
        started = time.monotonic_ns()
        prompt = [{"role": "user", "content": prompt_for(tokens)}]
        await ws.send(json.dumps({"type": "chat", "id": "b", "messages": prompt}))
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] != "delta":
                assert frame["type"] == "done", frame
                break
            arrived.append(time.monotonic_ns())
            contents.append(frame["content"])
    return ns_latencies(contents, arrived), (arrived[0] - started) / 1e6


async def floor_chat(url: str, tokens: int) -> tuple[list[float], float]:
    """The floor relays vLLM's chunks as they are: the client (not the relay) finds each one's content."""
    contents, arrived = [], []
    async with ws_connect(url) as ws:
        started = time.monotonic_ns()
        await ws.send(prompt_for(tokens))
        while (frame := await ws.recv()) != "[DONE]":
            choices = json.loads(frame)["choices"]
            if choices and (content := choices[0]["delta"].get("content")):
                arrived.append(time.monotonic_ns())
                contents.append(content)
    return ns_latencies(contents, arrived), (arrived[0] - started) / 1e6


async def article_chat(url: str, tokens: int) -> tuple[list[float], float] | None:
    """None when the connection died or never opened: its blocked event loop cannot answer the client's
    keepalive pings, nor finish an opening handshake within 30 s while another chat holds it."""
    from websockets.exceptions import ConnectionClosed

    contents: list[str] = []
    arrived: list[int] = []
    try:
        async with ws_connect(url) as ws:
            started = time.monotonic_ns()
            await ws.send(prompt_for(tokens))
            while len(contents) < tokens:
                text = await ws.recv()
                arrived.append(time.monotonic_ns())
                contents.append(str(text))
    except (ConnectionClosed, TimeoutError):
        return None
    return ns_latencies(contents, arrived), (arrived[0] - started) / 1e6


async def level(kind: str, target: str, tokens: int, chats: int) -> tuple[list[float], list[float], int]:
    """Every token's latency and every chat's TTFT (ms) with CHATS chats at once, and how many failed."""
    chat: Any = {"direct": direct_chat, "gateway": gateway_chat, "before": gateway_chat, "floor": floor_chat,
                 "article": article_chat}[kind]
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=None)) as pool:
        SHARED["direct"] = pool
        results = [r for r in await asyncio.gather(*(chat(target, tokens) for _ in range(chats))) if r is not None]
    if not results:
        return [math.nan], [math.nan], chats
    return ([value for per_chat, _ in results for value in per_chat], [ttft for _, ttft in results],
            chats - len(results))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def ping_while_streaming(gateway_url: str, tokens: int, chats: int, pings: int) -> list[float]:
    async with ws_connect(gateway_url) as pinger:
        streams = asyncio.gather(*(gateway_chat(gateway_url, tokens) for _ in range(chats)))
        waits = []
        await asyncio.sleep(0.05)
        for _ in range(pings):
            started = time.perf_counter()
            await asyncio.wait_for(await pinger.ping(), 10)
            waits.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.01)
        await streams
    return waits


async def idle_memory(gateway_url: str, pid: int, count: int) -> tuple[float, float]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, count * 2 + 256)), hard))
    gateway = psutil.Process(pid)
    before = gateway.memory_info().rss
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(count):
            await stack.enter_async_context(ws_connect(gateway_url))
        await asyncio.sleep(0.5)
        found = httpx.get(gateway_url.replace("ws://", "http://").replace("/ws/chat", "/healthz")).json()
        assert found["connections"] == count, found
        after = gateway.memory_info().rss
    return (after - before) / 2**20, after / 2**20


def cpu_s(pid: int | None) -> float:
    """The process's CPU time (user + system): its threads' time on a CPU from /proc/PID/task/*/schedstat
    (nanoseconds), else psutil's (clock ticks: 10 ms, coarse for a short level)."""
    if pid is None:
        return 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        tasks = Path(f"/proc/{pid}/task")
        return sum(int((task / "schedstat").read_text().split()[0]) for task in tasks.iterdir()) / 1e9
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


# One level of a table: chats, per relay its medians (see measure), and per relay each run's added (p50, p99).
Row = tuple[int, dict[str, tuple[float, ...]], dict[str, list[tuple[float, float]]]]


def measure(targets: dict[str, str], pids: dict[str, int], levels: list[int], tokens: int, *, runs: int,
            article_runs: int) -> list[Row]:
    """Per level, per relay: medians over RUNS of (token p50, token p99, TTFT p50, TTFT max, chats failed),
    then the relay process's CPU µs per token received over all RUNS (nan for direct: no relay); and each
    run's (p50, p99) added over direct by each relay that ran every run (the goal holds "in every run", not in
    the median; the floor's count says whether this machine allows it).
    The article's handler runs ARTICLE_RUNS times (paced, one run of it at 64 chats lasts a minute)."""
    rows = []
    for chats in levels:
        got: dict[str, list[tuple[float, ...]]] = {kind: [] for kind in targets}
        cpu = {kind: [0.0, 0] for kind in targets}  # seconds, tokens
        for run in range(runs):
            for kind, target in targets.items():  # interleaved, so noise hits them all alike
                if kind == "article" and run >= article_runs:
                    continue
                before = cpu_s(pids.get(kind))
                values, ttfts, failed = asyncio.run(level(kind, target, tokens, chats))
                cpu[kind][0] += cpu_s(pids.get(kind)) - before
                cpu[kind][1] += sum(1 for value in values if not math.isnan(value))
                got[kind].append((pct(values, 0.5), pct(values, 0.99), pct(ttfts, 0.5), max(ttfts), failed))
        added = {kind: [(r[0] - d[0], r[1] - d[1]) for r, d in zip(runs_, got["direct"], strict=True)]
                 for kind, runs_ in got.items() if kind != "direct" and len(runs_) == runs}
        rows.append((chats, {kind: (*(statistics.median(p[i] for p in runs_) for i in range(5)),
                                    cpu[kind][0] * 1e6 / cpu[kind][1] if kind in pids and cpu[kind][1] else math.nan)
                             for kind, runs_ in got.items()}, added))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--levels", default="1,16,64")
    parser.add_argument("--runs", type=int, default=3, help="repetitions per level; the median of each is shown")
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--interval-ms", type=float, default=20.0, help="the paced run's gap between tokens")
    parser.add_argument("--paced-tokens", type=int, default=50, help="tokens per chat in the paced run")
    parser.add_argument("--paced-runs", type=int, default=21,
                        help="repetitions of the paced run (its 64-chat level is the goal's, and noisy on 2 cores)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 tokens, levels 1 and 4, 20 idle")
    parser.add_argument("--baseline", type=Path, help="a directory holding another checkout's qwenops/: its "
                        "gateway runs beside this one as 'before'")
    args = parser.parse_args()
    if args.quick:
        args.tokens, args.levels, args.runs, args.idle, args.paced_tokens, args.paced_runs = 20, "1,4", 1, 20, 5, 1
    levels = [int(x) for x in args.levels.split(",")]
    top = max(levels)
    python = sys.executable
    gw_port, art_port, floor_port, before_port = free_port(), free_port(), free_port(), free_port()
    with process([python, "-c", UPSTREAM.format(repo=str(REPO))]) as upstream_proc:
        assert upstream_proc is not None and upstream_proc.stdout is not None
        upstream = f"http://127.0.0.1:{int(upstream_proc.stdout.readline())}"
        app_file = REPO / ".state" / "bench_article_app.py"
        app_file.parent.mkdir(exist_ok=True)
        app_file.write_text(ARTICLE_APP.format(upstream=upstream))
        (app_file.parent / "bench_floor_app.py").write_text(FLOOR_APP.format(upstream=upstream))
        gateway_argv = [python, "-m", "qwenops", "gateway", "--upstream", upstream, "--port", str(gw_port),
                        "--max-chats", str(4 * top + 64), "--max-chats-per-connection", "8", "--log-level", "error"]
        before_argv = [*gateway_argv[:7], str(before_port), *gateway_argv[8:]] if args.baseline else []
        article_argv = [python, "-m", "uvicorn", "--app-dir", str(app_file.parent), "bench_article_app:app",
                        "--port", str(art_port), "--log-level", "error", "--ws-per-message-deflate", "false"]
        floor_argv = [python, "-m", "uvicorn", "--app-dir", str(app_file.parent), "bench_floor_app:app",
                      "--port", str(floor_port), "--log-level", "error", "--ws-per-message-deflate", "false"]
        with process(gateway_argv, ready_url=f"http://127.0.0.1:{gw_port}/healthz") as gateway_proc, \
                process(article_argv, ready_url=f"http://127.0.0.1:{art_port}/docs") as article_proc, \
                process(floor_argv, ready_url=f"http://127.0.0.1:{floor_port}/healthz") as floor_proc, \
                process(before_argv, ready_url=f"http://127.0.0.1:{before_port}/healthz",
                        cwd=args.baseline or REPO) as before_proc:
            assert gateway_proc is not None and article_proc is not None and floor_proc is not None
            targets = {"direct": upstream, "gateway": f"ws://127.0.0.1:{gw_port}/ws/chat",
                       "floor": f"ws://127.0.0.1:{floor_port}/ws/chat", "article": f"ws://127.0.0.1:{art_port}/ws/chat"}
            pids = {"gateway": gateway_proc.pid, "floor": floor_proc.pid, "article": article_proc.pid}
            if before_proc is not None:
                targets["before"] = f"ws://127.0.0.1:{before_port}/ws/chat"
                pids["before"] = before_proc.pid
            for kind, target in targets.items():  # one chat each first: imports and pools, not counted
                asyncio.run(level(kind, target, 5, 1))
            tables = []
            for pace_ms, tokens, runs, article_runs in ((0.0, args.tokens, args.runs, args.runs),
                                                        (args.interval_ms, args.paced_tokens, args.paced_runs, 1)):
                PACE["s"] = pace_ms / 1000
                tables.append((pace_ms, tokens, runs, measure(targets, pids, levels, tokens, runs=runs,
                                                                article_runs=article_runs)))
            PACE["s"] = 0.0
            pings = asyncio.run(ping_while_streaming(targets["gateway"], args.tokens * 5, top, 20))
            grown, total = asyncio.run(idle_memory(targets["gateway"], gateway_proc.pid, args.idle))

    verdict = report(tables)
    print(f"ping on another connection while {top} chats stream: median {statistics.median(pings):.2f} ms, "
          f"max {max(pings):.2f} ms ({len(pings)} pings)")
    print(f"{args.idle} idle connections: gateway RSS +{grown:.1f} MiB "
          f"(process total {total:.1f} MiB; goal: the connections < 100 MB): "
          + ("met" if grown < 100 * 1e6 / 2**20 else "MISSED"))
    for line in verdict:
        print(line)


def report(tables: list[tuple[float, int, int, list[Row]]]) -> list[str]:
    """Print each mode's latency and CPU tables (with --baseline, the 'before' gateway's columns at the right of
    each); return the goals' verdict lines."""
    verdict = []
    for pace_ms, tokens, runs, rows in tables:
        how = f"one token every {pace_ms:g} ms per chat" if pace_ms else "as fast as the socket takes them"
        before = "before" in rows[0][1]
        print(f"gateway benchmark: {tokens} tokens per chat, {how}; median of {runs} runs"
              + ("" if pace_ms == 0 or runs == 1 else " (the article's: 1 run)") + "; ms per token, read - written")
        print(f"{'chats':>5}  {'direct p50/p99':>16}  {'gateway p50/p99':>16}  {'added p50/p99':>15}  "
              f"{'floor p50/p99':>16}  {'floor added':>15}  "
              f"{'article p50/p99':>18}  {'article added':>15}  {'TTFT p50/max: direct':>22}  {'gateway':>15}  "
              f"{'floor':>15}  {'article':>17}"
              + (f"  {'before p50/p99':>16}  {'before added':>15}  {'TTFT before':>15}" if before else ""))
        for chats, med, per_run in rows:
            d, g, f, a = med["direct"], med["gateway"], med["floor"], med["article"]
            added = (g[0] - d[0], g[1] - d[1])
            line = (f"{chats:>5}  {d[0]:>7.2f} /{d[1]:>7.2f}  {g[0]:>7.2f} /{g[1]:>7.2f}  {added[0]:>6.2f} /"
                    f"{added[1]:>6.2f}  {f[0]:>7.2f} /{f[1]:>7.2f}  {f[0] - d[0]:>6.2f} /{f[1] - d[1]:>6.2f}"
                    f"  {a[0]:>8.2f} /{a[1]:>8.2f}  {a[0] - d[0]:>6.1f} /{a[1] - d[1]:>6.1f}"
                    f"  {d[2]:>13.1f} /{d[3]:>6.1f}  {g[2]:>6.1f} /{g[3]:>6.1f}  {f[2]:>6.1f} /{f[3]:>6.1f}"
                    f"  {a[2]:>7.1f} /{a[3]:>7.1f}")
            if before:
                b = med["before"]
                line += (f"  {b[0]:>7.2f} /{b[1]:>7.2f}  {b[0] - d[0]:>6.2f} /{b[1] - d[1]:>6.2f}"
                         f"  {b[2]:>6.1f} /{b[3]:>6.1f}")
            if a[4]:
                line += f"  article: {a[4]:g} of {chats} chats cut (its blocked loop missed pings or the handshake)"
            print(line)
            if chats == 64:
                gateway_runs = per_run["gateway"]
                met = {kind: sum(1 for p50, p99 in each if p50 <= 1 and p99 <= 5) for kind, each in per_run.items()}
                others = ", ".join(f"{kind} {count} of {len(per_run[kind])}" for kind, count in met.items()
                                   if kind != "gateway")
                verdict.append(f"{how}: added at 64 chats p50 {added[0]:.2f} ms (goal <= 1), p99 {added[1]:.2f} ms "
                               f"(goal <= 5), median of {len(gateway_runs)} runs; worst run p50 "
                               f"{max(p50 for p50, _ in gateway_runs):.2f} ms, p99 "
                               f"{max(p99 for _, p99 in gateway_runs):.2f} ms; met in {met['gateway']} of "
                               f"{len(gateway_runs)} runs (goal: every run): "
                               + ("met" if met["gateway"] == len(gateway_runs) else "MISSED")
                               + f" (the same goal: {others})")
        print(f"relay process CPU, µs per token relayed (user + sys over all {runs} runs of a level, "
              "connection set-up included):")
        print(f"{'chats':>5}  {'gateway':>8}  {'floor':>8}  {'gateway/floor':>13}  {'article':>8}"
              + (f"  {'before':>8}  {'before/floor':>12}" if before else ""))
        for chats, med, _ in rows:
            g_cpu, f_cpu, a_cpu = med["gateway"][5], med["floor"][5], med["article"][5]
            line = (f"{chats:>5}  {g_cpu:>8.1f}  {f_cpu:>8.1f}  {g_cpu / f_cpu if f_cpu else math.nan:>12.2f}x  "
                    f"{a_cpu:>8.1f}")
            if before:
                b_cpu = med["before"][5]
                line += f"  {b_cpu:>8.1f}  {b_cpu / f_cpu if f_cpu else math.nan:>11.2f}x"
            print(line)
        chats, med, _ = rows[-1]
        ratio = med["gateway"][5] / med["floor"][5] if med["floor"][5] else math.nan
        verdict.append(f"{how}: gateway CPU per token at {chats} chats {med['gateway'][5]:.1f} µs, "
                       f"{ratio:.2f}x the floor's {med['floor'][5]:.1f} µs (goal <= 2x): "
                       + ("met" if ratio <= 2 else "MISSED")
                       + (f"; before: {med['before'][5]:.1f} µs, {med['before'][5] / med['floor'][5]:.2f}x"
                          if before and med["floor"][5] else ""))
    return verdict


if __name__ == "__main__":
    main()
