"""`qwenops gateway` as its own process in front of the real vLLM CPU server: the known answer, cancel
and disconnect seen by vLLM's /metrics, a client that stops reading, a ping while another connection
streams, tokens, 32 chats over 8 connections, SIGTERM's drain."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qwenops.stream import stream_chat
from qwenops.tinymodel import KNOWN_PROMPTS
from tests.conftest import REPO
from tests.gateway_harness import chat, connect, receive, text_of, until_end
from tests.integration.conftest import (
    LONG_CONTEXT,
    RunningServer,
    free_port,
    long_context_copy,
    server_metrics,
    start_server,
)
from tests.polling import poll_until

pytestmark = pytest.mark.engine

TOKEN = "engine-test-token-0123456789"
PROMPT = "Tell me about the sea."
RUNNING = "vllm:num_requests_running"
# A 4,000-token answer: the shared server's 512-token context is answered in ~0.6 s, often in one burst
# at the end, too fast to act on; this one streams for ~5 s here, though the API server, short of CPU
# beside the engine, often delivers the first hundred tokens, then nothing for seconds, then the rest.
LONG = {"max_tokens": 4000, "ignore_eos": True, "temperature": 0}
# A new connection for each /healthz read: uvicorn closes an idle keep-alive connection after 5 s, and a request
# sent on it as it closes fails with a ReadError (seen in a loaded CI run, with seconds between the reads).
NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)


@pytest.fixture(scope="module")
def long_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server whose answers may run to LONG_CONTEXT tokens, for the tests that act while one streams."""
    model_dir = long_context_copy(tiny_model_dir, tmp_path_factory.mktemp("long") / "qwen3-tiny-long")
    server = start_server(model_dir, tmp_path_factory.mktemp("vllm-long-logs"),
                          overrides={"max_model_len": str(LONG_CONTEXT)})
    yield server
    server.stop()


class GatewayProcess:
    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process, self.port = process, port

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/chat"

    def health(self) -> dict[str, Any]:
        found: dict[str, Any] = httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=5).json()
        return found


@contextlib.contextmanager
def gateway_process(upstream: str, *args: str, token: str | None = None) -> Iterator[GatewayProcess]:
    port = free_port()
    env = {**os.environ, "QWENOPS_GATEWAY_TOKEN": token or ""}
    process = subprocess.Popen(
        [sys.executable, "-m", "qwenops", "gateway", "--upstream", upstream, "--port", str(port),
         "--log-level", "warning", *args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    running = GatewayProcess(process, port)

    def answers() -> bool:
        assert process.poll() is None, f"the gateway exited: {process.communicate()[0]}"
        with contextlib.suppress(httpx.HTTPError):
            return bool(running.health()["status"] == "ok")
        return False

    poll_until(answers, "the gateway answers /healthz", timeout_s=120, interval_s=0.1)
    try:
        yield running
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def run(coro: Any, hang_s: float = 600) -> Any:
    """Run a test's coroutine; HANG_S only ends one that hangs (a loaded 2-core machine is slow, not wrong)."""
    return asyncio.run(asyncio.wait_for(coro, hang_s))


def wait_running(server: RunningServer, count: float, what: str, timeout_s: float = 120) -> None:
    poll_until(lambda: server_metrics(server.base_url)[RUNNING] == count,
               f"{what}: vLLM runs {count:g} requests", timeout_s=timeout_s, interval_s=0.01)


def test_the_known_answer_arrives_as_deltas_equal_to_the_sse_text(vllm_server: RunningServer) -> None:
    direct = "".join(d.content for d in stream_chat([{"role": "user", "content": PROMPT}],
                                                    base_url=vllm_server.base_url, model=vllm_server.model,
                                                    temperature=0, max_tokens=64))

    async def go(url: str) -> list[dict[str, Any]]:
        async with connect(url) as ws:
            await ws.send(chat("sea", PROMPT, temperature=0, max_tokens=64))
            frames: list[dict[str, Any]] = (await until_end(ws, {"sea"}))["sea"]
            return frames

    with gateway_process(vllm_server.base_url, "--profile", "cpu-tiny") as gw:
        frames = run(go(gw.url))
    assert direct == KNOWN_PROMPTS[PROMPT]
    assert text_of(frames) == direct  # how many deltas is vLLM's choice: its API server, behind, merges steps
    assert frames[-1]["type"] == "done" and frames[-1]["finish_reason"] == "stop"
    assert frames[-1]["usage"]["completion_tokens"] > 0


def generated(server: RunningServer) -> float:
    return server_metrics(server.base_url)["vllm:generation_tokens_total"]


def test_cancel_and_disconnect_abort_the_request_in_vllm(long_server: RunningServer) -> None:
    """After the first delta the client cancels (or leaves); vLLM must stop generating short of max_tokens.

    vLLM 0.32 counts no aborted request in its finished counters, so the evidence is its generated-token
    counter once the request no longer runs: fewer than max_tokens means aborted. A request can still
    end on its own first (the engine may burst), so each way is tried until one is aborted, up to 5
    times; a gateway that never closed the upstream request fails here."""
    server = long_server

    async def cancel(url: str) -> None:
        async with connect(url) as ws:
            await ws.send(chat("long", PROMPT, **LONG))
            assert (await receive(ws, 120))["type"] == "delta"
            await ws.send(json.dumps({"type": "cancel", "id": "long"}))
            last = (await until_end(ws, {"long"}))["long"][-1]
            assert last["type"] == "done" or last["code"] == "cancelled", last

    async def leave(url: str) -> None:
        async with connect(url) as ws:
            await ws.send(chat("gone", PROMPT, **LONG))
            assert (await receive(ws, 120))["type"] == "delta"

    with gateway_process(server.base_url) as gw:
        for way in (cancel, leave):
            for _attempt in range(5):
                before = generated(server)
                run(way(gw.url))
                wait_running(server, 0, way.__name__, timeout_s=120)
                if generated(server) - before < LONG["max_tokens"]:
                    break
            else:
                pytest.fail(f"{way.__name__}: vLLM finished the request every time, never aborted it")
        wait_for_gateway_idle(gw)


def test_a_client_that_stops_reading_is_cut_off_with_a_bounded_queue(long_server: RunningServer) -> None:
    """A client that sends a chat and reads nothing: once the socket buffers and the send queue are full,
    the gateway ends the chat (`slow_reader`), holds no more than the queue's bound for it, closes its
    upstream request and goes on serving.

    Loopback's autotuned socket buffers take about a megabyte, more than the 4,000-token answer's
    ~750 KB of frames (128-character ids), so both ends' are set small: SO_RCVBUF on this client's
    socket and the gateway's --socket-buffer-bytes. What can wait is then ~170 KB (8 KiB here, 32 KiB
    in the gateway's kernel buffer, 64 KiB in uvicorn's, the 64 KiB queue), under a quarter of it.

    That vLLM aborts the request when the gateway cuts it is shown against the synthetic upstream
    (tests/unit/test_gateway.py), not here: on 2 cores vLLM's API server, its event loop busy with the
    engine's outputs, sends a first burst of tokens and then nothing until the answer is complete, so a
    cut that needs ~900 frames comes after vLLM has finished."""
    server, limit = long_server, 64 * 1024

    def health_when(gw: GatewayProcess, condition: Callable[[dict[str, Any]], bool],
                    timeout_s: float) -> dict[str, Any]:
        def matching() -> dict[str, Any] | None:
            found = gw.health()
            return found if condition(found) else None

        return poll_until(matching, "the gateway's /healthz", timeout_s=timeout_s, interval_s=0.01)

    async def stall(gw: GatewayProcess, chat_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window is small
        sock.connect(("127.0.0.1", gw.port))
        async with connect(gw.url, sock=sock, max_queue=1, max_size=None) as ws:
            failed = gw.health()["chats_failed"]
            await ws.send(chat(chat_id, PROMPT, **LONG))
            # Read nothing (this client's library stops reading its socket once one frame waits in its
            # queue) until the gateway has ended the chat.
            at_cut = await asyncio.to_thread(health_when, gw, lambda h: h["chats_failed"] > failed, 120)
            return at_cut, (await until_end(ws, {chat_id}))[chat_id]

    async def healthy(url: str) -> str:
        async with connect(url) as ws:
            await ws.send(chat("after", "Name a colour.", temperature=0))
            return text_of((await until_end(ws, {"after"}))["after"])

    with gateway_process(server.base_url, "--send-queue-bytes", str(limit), "--socket-buffer-bytes", "16384") as gw:
        at_cut, frames = run(stall(gw, "stalled-".ljust(128, "x")))
        assert frames[-1]["type"] == "error" and frames[-1]["code"] == "slow_reader", frames[-1]
        assert at_cut["queued_bytes"] <= limit + 1024, at_cut  # the bound, plus the chat's one end frame
        deltas = len([frame for frame in frames if frame["type"] == "delta"])
        assert deltas < LONG["max_tokens"] // 2, deltas  # what the buffers and the queue held, not the answer
        wait_running(server, 0, "the stalled reader's chat", timeout_s=180)
        assert run(healthy(gw.url)) == KNOWN_PROMPTS["Name a colour."]  # the gateway itself is fine
        wait_for_gateway_idle(gw)


def test_pings_are_answered_while_another_connection_streams(long_server: RunningServer) -> None:
    """While one connection's chat streams a long answer, another's pings (WebSocket pings, answered by
    the protocol layer, and the protocol's own {"type": "ping"}, answered through the chat code) come
    back while that chat is still running. A relay that blocked its event loop on the upstream read (the
    article's) answers none until the answer has ended. How fast they come back is the benchmark's
    business (benchmarks/gateway.py), not a test's: a loaded machine is slow, not wrong.

    The pings go from the chat's start until the gateway has ended it (its /healthz), not from its first
    delta: vLLM's API server here sends an answer in bursts, sometimes all of it at the end. The
    streaming connection is read only after that: this process parsing 4,000 frames at once, on a
    machine the engine keeps busy, delays its own pings by seconds. The answer's ~700 KB of frames wait
    in the socket buffers and the 1 MiB send queue meanwhile. It is 4,000 tokens (~5 s on an idle machine,
    far longer on a loaded one, and a round of pings takes milliseconds to seconds), so a starved test
    process still gets rounds in, and the whole answer stays well inside the hang guard."""
    answer_tokens = 4_000

    async def go(gw: GatewayProcess) -> tuple[dict[str, list[float]], list[dict[str, Any]]]:
        health_url = f"http://127.0.0.1:{gw.port}/healthz"
        async with connect(gw.url) as streaming, connect(gw.url) as pinging, \
                    httpx.AsyncClient(timeout=60, limits=NO_KEEPALIVE) as http:

            async def chat_running() -> bool:
                return bool((await http.get(health_url)).json()["chats_done"] == done_before)

            done_before = (await http.get(health_url)).json()["chats_done"]
            await streaming.send(chat("s", PROMPT, **{**LONG, "max_tokens": answer_tokens}))
            during: dict[str, list[float]] = {"websocket": [], "chat": []}  # waits of pongs seen mid-answer
            while await chat_running():
                started = time.perf_counter()
                await asyncio.wait_for(await pinging.ping(), 120)
                if await chat_running():
                    during["websocket"].append(time.perf_counter() - started)
                started = time.perf_counter()
                await pinging.send(json.dumps({"type": "ping"}))
                assert (await receive(pinging, 120))["type"] == "pong"
                if await chat_running():
                    during["chat"].append(time.perf_counter() - started)
                await asyncio.sleep(0.05)
            return during, (await until_end(streaming, {"s"}, timeout_s=300))["s"]

    with gateway_process(long_server.base_url) as gw:
        during, frames = run(go(gw))
    assert frames[-1]["type"] == "done" and frames[-1]["usage"]["completion_tokens"] == answer_tokens
    shown = {kind: [round(wait * 1000, 1) for wait in waits] for kind, waits in during.items()}
    assert during["websocket"] and during["chat"], f"no pong came back while the answer streamed: {shown}"


def wait_for_gateway_idle(gw: GatewayProcess) -> None:
    poll_until(lambda: gw.health()["chats"] == 0, "the gateway has no chat left", timeout_s=180)


def test_no_token_and_a_wrong_token_are_refused(vllm_server: RunningServer) -> None:
    from websockets.exceptions import InvalidStatus

    async def attempt(url: str, headers: dict[str, str]) -> str:
        try:
            async with connect(url, additional_headers=headers) as ws:
                await ws.send(chat("a", "Name a colour.", temperature=0))
                return text_of((await until_end(ws, {"a"}))["a"])
        except InvalidStatus as exc:
            return f"HTTP {exc.response.status_code}"

    with gateway_process(vllm_server.base_url, "--host", "0.0.0.0", token=TOKEN) as gw:
        assert run(attempt(gw.url, {})) == "HTTP 403"
        assert run(attempt(gw.url, {"Authorization": "Bearer not-the-token-0123456789"})) == "HTTP 403"
        assert run(attempt(gw.url, {"Authorization": f"Bearer {TOKEN}"})) == KNOWN_PROMPTS["Name a colour."]
        assert gw.process.poll() is None
    assert TOKEN not in (gw.process.stdout.read() if gw.process.stdout else "")


def test_32_chats_over_8_connections_lose_and_repeat_no_token(vllm_server: RunningServer) -> None:
    prompts = list(KNOWN_PROMPTS)

    async def connection(url: str, index: int) -> dict[str, str]:
        async with connect(url) as ws:
            ids = {f"{index}-{n}": prompts[(index + n) % len(prompts)] for n in range(4)}
            for chat_id, prompt in ids.items():
                await ws.send(chat(chat_id, prompt, temperature=0, max_tokens=64))
            frames = await until_end(ws, set(ids), timeout_s=280)
            assert all(frames[chat_id][-1]["type"] == "done" for chat_id in ids), frames
            return {prompt + "|" + chat_id: text_of(frames[chat_id]) for chat_id, prompt in ids.items()}

    async def go(url: str) -> list[dict[str, str]]:
        return list(await asyncio.gather(*(connection(url, index) for index in range(8))))

    with gateway_process(vllm_server.base_url, "--max-chats", "32") as gw:
        answers = run(go(gw.url))
        assert gw.health()["chats_done"] == 32
    found = {key: text for per_connection in answers for key, text in per_connection.items()}
    assert len(found) == 32
    for key, text in found.items():
        assert text == KNOWN_PROMPTS[key.split("|")[0]], key


def test_sigterm_drains_running_chats_then_exits_0(vllm_server: RunningServer) -> None:
    from websockets.exceptions import ConnectionClosed

    async def go(gw: GatewayProcess) -> tuple[list[dict[str, Any]], int | None]:
        async with connect(gw.url) as ws:
            await ws.send(chat("sea", PROMPT, temperature=0, max_tokens=64))
            frames = [await receive(ws, 120)]
            os.kill(gw.process.pid, signal.SIGTERM)
            with contextlib.suppress(ConnectionClosed):
                while True:
                    frames.append(await receive(ws, 120))
            return frames, ws.close_code

    with gateway_process(vllm_server.base_url, "--drain", "60", "--json") as gw:
        frames, code = run(go(gw))
        out, _ = gw.process.communicate(timeout=60)
    assert text_of(frames) == KNOWN_PROMPTS[PROMPT]  # the running chat finished
    assert frames[-1]["type"] == "done"
    assert code == 1001
    assert gw.process.returncode == 0
    envelope = json.loads(out[out.index("{"):])
    assert envelope["data"]["drained"] is True and envelope["data"]["chats_done"] == 1
