"""The gateway resumes on the real vLLM CPU engine under `qwenops serve`: a greedy answer run to
`max_tokens` (`ignore_eos`) is cut by SIGKILL of the EngineCore once tokens have arrived (evidence, never
a sleep); the supervisor restarts vLLM, the chat gets one `resumed` frame and its text equals the uncut
reference answer's. A chat sent while the server is down (its /health refused: evidence that the restart
is under way) waits in the gateway's queue and completes with the tiny model's known answer.

The answer is 4,000 tokens on a copy of the tiny model with a long context (conftest.long_context_copy):
on 2 cores the engine streams 480 tokens in about a second, and the gateway's and the client's buffers hold
them, so a kill after the client's first delta can land after vLLM has finished (seen: no cut at all);
such an attempt is tried again on a fresh chat once the server is back."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from qwenops.tinymodel import KNOWN_PROMPTS
from tests.gateway_harness import chat, connect, receive, text_of, until_end
from tests.integration.conftest import LONG_CONTEXT, start_serve
from tests.integration.test_gateway_engine import gateway_process
from tests.integration.test_stream_resume import vllm_process
from tests.polling import poll_until

pytestmark = [pytest.mark.engine, pytest.mark.timeout(1800)]  # a hang guard: serve restarts vLLM mid-test

MAX_TOKENS = 4000
KILL_AFTER = 1  # deltas received before the kill: the evidence that the answer streams
CUT_ATTEMPTS = 4
GREEDY = {"temperature": 0, "max_tokens": MAX_TOKENS, "ignore_eos": True}
PROMPT = "Say hello."
DURING = "What is 2+2?"


def reasoning_of(frames: list[dict[str, Any]]) -> str:
    return "".join(frame.get("reasoning", "") for frame in frames if frame["type"] == "delta")


def server_down(base_url: str) -> bool:
    try:
        return httpx.get(base_url + "/health", timeout=2).status_code != 200
    except httpx.HTTPError:
        return True


Frames = list[dict[str, Any]]


async def cut_and_resume(url: str, kill: Callable[[], None], base_url: str) -> tuple[Frames, Frames, Frames]:
    """The reference answer, the same answer cut by KILL once KILL_AFTER deltas arrived, and a chat sent on
    another connection once the server is down.

    A kill can land after the engine has generated the whole answer: vLLM's API server, short of CPU, had
    it all queued and delivers it uncut (seen in CI: 4,000 tokens done, no cut). That attempt shows nothing
    about resuming; the server restarts anyway, and the cut is tried again on a fresh chat, up to
    CUT_ATTEMPTS times."""
    async with connect(url) as ws, connect(url) as other:
        await ws.send(chat("reference", PROMPT, **GREEDY))
        reference = (await until_end(ws, {"reference"}, 800))["reference"]
        during: Frames = []
        for attempt in range(CUT_ATTEMPTS):
            chat_id = f"cut{attempt}"
            await ws.send(chat(chat_id, PROMPT, **GREEDY))
            frames: Frames = []
            while sum(frame["type"] == "delta" for frame in frames) < KILL_AFTER:
                frame = await receive(ws, 800)
                if frame.get("id") == chat_id:
                    frames.append(frame)
            assert frames[-1]["type"] == "delta", "the answer ended before the kill"
            kill()
            await asyncio.to_thread(poll_until, lambda: server_down(base_url),
                                    "vLLM's API server goes down after its engine", 600, 0.05)
            if not during:
                await other.send(chat("during", DURING, temperature=0, max_tokens=64))
            frames += (await until_end(ws, {chat_id}, 900))[chat_id]
            if not during:
                during = (await until_end(other, {"during"}, 900))["during"]
            if any(frame["type"] == "resumed" for frame in frames):
                return reference, frames, during
            await asyncio.to_thread(poll_until, lambda: not server_down(base_url), "vLLM ready again", 800, 0.5)
        return reference, frames, during


def test_a_chat_cut_by_sigkill_resumes_with_one_frame_and_a_chat_sent_during_the_restart_completes(
        long_context_state_dir: Path, kill_tolerant_profile: str) -> None:
    state_dir = long_context_state_dir
    for serve in start_serve(state_dir, "-p", kill_tolerant_profile, "--set", f"max_model_len={LONG_CONTEXT}"):
        serve.wait_message("READY=1", timeout_s=800)
        base_url = f"http://127.0.0.1:{serve.port}"
        with gateway_process(base_url, "--profile", kill_tolerant_profile, "--queue-deadline", "900") as gw:
            # The EngineCore of the moment: a retry's is the one serve restarted.
            kill_engine = functools.partial(lambda serve: vllm_process(serve, "EngineCore").kill(), serve)
            reference, frames, during = asyncio.run(cut_and_resume(gw.url, kill_engine, base_url))
            with contextlib.suppress(httpx.HTTPError):
                print("\ngateway /healthz after:", gw.health())
    resumed = [frame for frame in frames if frame["type"] == "resumed"]
    print("resumed frame:", resumed, f"({[f['type'] for f in frames].count('delta')} deltas)")
    at = frames.index(resumed[0]) if resumed else 0
    for frame in (*frames[:3], *frames[max(0, at - 2):at + 3], frames[-1]):  # the README's example is these
        print(json.dumps(frame, ensure_ascii=False))
    for frame in during:
        print(json.dumps(frame, ensure_ascii=False))
    assert len(resumed) == 1, [frame for frame in frames if frame["type"] != "delta"]
    assert KILL_AFTER <= resumed[0]["after_tokens"] < MAX_TOKENS and resumed[0]["gap_ms"] > 0
    assert text_of(frames) == text_of(reference) != ""
    assert reasoning_of(frames) == reasoning_of(reference)
    assert frames[-1]["type"] == "done" and frames[-1]["finish_reason"] == "length"
    assert frames[-1]["usage"]["completion_tokens"] == MAX_TOKENS == reference[-1]["usage"]["completion_tokens"]
    assert during[-1]["type"] == "done", during[-1]
    assert text_of(during) == KNOWN_PROMPTS[DURING]
