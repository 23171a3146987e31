"""The streaming client against the real vLLM CPU server: exact greedy answers, sync and async,
concurrent streams, and the in-band error vLLM sends when its engine dies mid-stream."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import TypedDict

import httpx
import psutil
import pytest

from qwenops.errors import InBandError, StreamInterrupted
from qwenops.stream import ChatDelta, astream_chat, stream_chat
from tests.integration.conftest import RunningServer


class Sampling(TypedDict):
    temperature: float
    top_p: float
    max_tokens: int


GREEDY: Sampling = {"temperature": 0.0, "top_p": 1.0, "max_tokens": 64}


def known_prompts() -> dict[str, str]:
    from qwenops.tinymodel import KNOWN_PROMPTS

    return KNOWN_PROMPTS


@pytest.mark.engine
def test_sync_stream_gives_the_known_greedy_answer(vllm_server: RunningServer) -> None:
    for prompt, answer in known_prompts().items():
        deltas = list(stream_chat([{"role": "user", "content": prompt}], base_url=vllm_server.base_url,
                                  model=vllm_server.model, extra_body={"return_token_ids": True}, **GREEDY))
        assert "".join(d.content for d in deltas) == answer
        usage = deltas[-1].usage
        assert usage is not None and sum(d.tokens for d in deltas) == usage.completion_tokens
        assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]


@pytest.mark.engine
def test_async_streams_run_concurrently(vllm_server: RunningServer) -> None:
    prompts = list(known_prompts().items()) * 2

    async def one(client: httpx.AsyncClient, prompt: str) -> list[ChatDelta]:
        stream = astream_chat([{"role": "user", "content": prompt}], base_url=vllm_server.base_url,
                              model=vllm_server.model, client=client, **GREEDY)
        return [delta async for delta in stream]

    async def main() -> list[list[ChatDelta]]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=8)) as client:
            return await asyncio.gather(*(one(client, prompt) for prompt, _ in prompts))

    results = asyncio.run(main())
    assert ["".join(d.content for d in deltas) for deltas in results] == [answer for _, answer in prompts]
    assert len({deltas[0].id for deltas in results}) == len(prompts)


def engine_core(server: RunningServer) -> psutil.Process:
    for child in psutil.Process(server.pgid).children(recursive=True):
        if "EngineCore" in " ".join(child.cmdline()) or "EngineCore" in child.name():
            return child
    raise AssertionError("no VLLM::EngineCore process in the server's group")


@pytest.mark.engine
def test_engine_death_mid_stream_is_an_in_band_error(disposable_server: Callable[[], RunningServer]) -> None:
    # A kill can land after the engine generated the whole answer (vLLM's API server, short of CPU, had it
    # all queued and delivers it uncut): that attempt shows nothing, and a fresh server is tried.
    for _attempt in range(3):
        server = disposable_server()
        core = engine_core(server)
        received: list[ChatDelta] = []
        try:
            for delta in stream_chat([{"role": "user", "content": "Tell me about the sea."}],
                                     base_url=server.base_url, model=server.model, temperature=0.0, top_p=1.0,
                                     max_tokens=480, extra_body={"ignore_eos": True}):
                received.append(delta)
                if len(received) == 20:
                    os.kill(core.pid, signal.SIGKILL)
        except (InBandError, StreamInterrupted) as exc:
            error = exc
            break
    else:
        pytest.fail("the answer was never cut: every kill landed after the engine had finished")
    # vLLM answers an in-flight stream with `data: {"error": ...}` when EngineCore dies (ENGINE_FACTS.md);
    # if the API server went down first, the cut is reported instead. Either way: typed, with the text so far.
    assert error.text_so_far.startswith("".join(d.content for d in received[:5]))
    if isinstance(error, InBandError):
        assert "EngineCore" in error.message or error.error
