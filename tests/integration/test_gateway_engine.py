"""`qwenops gateway` as its own process in front of the real vLLM CPU server: the known answer, cancel
and disconnect seen by vLLM's /metrics, tokens, 32 chats over 8 connections, SIGTERM's drain."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from qwenops.stream import stream_chat
from qwenops.tinymodel import KNOWN_PROMPTS
from tests.conftest import REPO
from tests.gateway_harness import chat, connect, receive, text_of, until_end
from tests.integration.conftest import RunningServer, free_port, server_metrics

pytestmark = pytest.mark.engine

TOKEN = "engine-test-token-0123456789"
PROMPT = "Tell me about the sea."
RUNNING = "vllm:num_requests_running"


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
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, f"the gateway exited: {process.communicate()[0]}"
        assert time.monotonic() < deadline, "the gateway did not answer /healthz within 60 s"
        with contextlib.suppress(httpx.HTTPError):
            if running.health()["status"] == "ok":
                break
        time.sleep(0.1)
    try:
        yield running
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 300))


def wait_running(server: RunningServer, count: float, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while (seen := server_metrics(server.base_url)[RUNNING]) != count:
        assert time.monotonic() < deadline, f"{what}: vLLM runs {seen:g} requests after {timeout_s:g} s"
        time.sleep(0.01)


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
    assert text_of(frames) == direct
    assert len([f for f in frames if f["type"] == "delta"]) > 1  # streamed, not one block
    assert frames[-1]["type"] == "done" and frames[-1]["finish_reason"] == "stop"
    assert frames[-1]["usage"]["completion_tokens"] > 0


def generated(server: RunningServer) -> float:
    return server_metrics(server.base_url)["vllm:generation_tokens_total"]


def test_cancel_and_disconnect_abort_the_request_in_vllm(
        disposable_server: Callable[..., RunningServer]) -> None:
    """After the first delta the client cancels (or leaves); vLLM must stop generating short of max_tokens.

    The shared server's 512-token context is answered in ~0.6 s, often in one burst at the end, too
    fast to cancel; a server with the model's whole 4096-token context streams a 4,000-token answer
    for ~5 s here. vLLM 0.32 counts no aborted request in its finished counters, so the evidence is
    its generated-token counter once the request no longer runs: fewer than max_tokens means aborted.
    A request can still end on its own first (the engine may burst), so each way is tried until one
    is aborted, up to 5 times; a gateway that never closed the upstream request fails here."""
    server = disposable_server(max_model_len="4096")
    long = {"max_tokens": 4000, "ignore_eos": True, "temperature": 0}

    async def cancel(url: str) -> None:
        async with connect(url) as ws:
            await ws.send(chat("long", PROMPT, **long))
            assert (await receive(ws, 120))["type"] == "delta"
            await ws.send(json.dumps({"type": "cancel", "id": "long"}))
            last = (await until_end(ws, {"long"}))["long"][-1]
            assert last["type"] == "done" or last["code"] == "cancelled", last

    async def leave(url: str) -> None:
        async with connect(url) as ws:
            await ws.send(chat("gone", PROMPT, **long))
            assert (await receive(ws, 120))["type"] == "delta"

    with gateway_process(server.base_url) as gw:
        for way in (cancel, leave):
            for _attempt in range(5):
                before = generated(server)
                run(way(gw.url))
                wait_running(server, 0, way.__name__, timeout_s=120)
                if generated(server) - before < long["max_tokens"]:
                    break
            else:
                pytest.fail(f"{way.__name__}: vLLM finished the request every time, never aborted it")
        wait_for_gateway_idle(gw)


def wait_for_gateway_idle(gw: GatewayProcess) -> None:
    deadline = time.monotonic() + 10
    while gw.health()["chats"] != 0:
        assert time.monotonic() < deadline, gw.health()
        time.sleep(0.05)


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
