"""Resume on the real vLLM CPU engine under `qwenops serve`: a greedy answer run to `max_tokens`
(`ignore_eos`) is cut halfway by SIGKILL of the EngineCore, then of the API server, and each time the
supervisor restarts vLLM and the library continues from the token ids already delivered. The resumed
answer must be token for token (ids and text) the uncut reference answer.

One `qwenops serve` start is shared by both cuts (a start and each restart take a minute or more on a
loaded 2-core machine). The kill is made from the consumer's loop once tokens have arrived (evidence,
not a sleep). The answer is 4,000 tokens on a copy of the tiny model with a long context
(conftest.long_context_copy): on 2 cores the engine streams 480 tokens in about a second, and on a busy
machine a consumer short of CPU noticed its 16th token only after the whole 480 had been generated."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from qwenops.stream import ChatDelta, Resume, stream_chat
from tests.integration.conftest import LONG_CONTEXT, Serve, start_serve

MAX_TOKENS = 4000  # on the long-context copy; the prompt is 13 tokens
KILL_AFTER = 16
ASK = {"model": "Qwen3-14B", "temperature": 0.0, "max_tokens": MAX_TOKENS,
       "extra_body": {"ignore_eos": True, "return_token_ids": True}}
MESSAGES = [{"role": "user", "content": "Say hello."}]


def ids(deltas: list[ChatDelta]) -> list[int]:
    return [token for delta in deltas for token in delta.token_ids or ()]


def text(deltas: list[ChatDelta]) -> str:
    return "".join(delta.reasoning_content + delta.content for delta in deltas)


def vllm_process(serve: Serve, marker: str) -> psutil.Process:
    serve.remember_server_pids()
    for process in psutil.Process(serve.process.pid).children(recursive=True):
        cmdline = " ".join(process.cmdline())
        if marker in process.name() or (marker in cmdline and "supervisor.guard" not in cmdline):
            return process
    raise AssertionError(f"no {marker} process under serve")


CUT_ATTEMPTS = 4


def cut_until_resumed(serve: Serve, marker: str, reference: list[ChatDelta], ready: int) -> tuple[int, int]:
    """Cut the answer by SIGKILL of the process `marker` names and check the resumed answer; the tokens
    before the cut and the index of the READY the restart logged.

    A kill can land after the whole answer left that process: the EngineCore, short of CPU, had generated it
    all and the API server delivers it uncut; or the API server had written every chunk into the socket's
    buffer, which the client still reads after the process is gone. That attempt shows nothing about
    resuming; serve restarts vLLM anyway, and the cut is tried again on the new processes."""
    for _attempt in range(CUT_ATTEMPTS):
        base_url = f"http://127.0.0.1:{serve.port}"
        resumed = cut_and_resume(base_url, vllm_process(serve, marker).kill)
        ready = serve.wait_message("READY=1", after=ready + 1)
        if any(delta.resumed is not None for delta in resumed):
            break
    return check_resumed(resumed, reference), ready


def cut_and_resume(base_url: str, kill: Callable[[], None]) -> list[ChatDelta]:
    deltas: list[ChatDelta] = []
    tokens = 0
    killed = False
    for delta in stream_chat(MESSAGES, base_url=base_url, resume=Resume(attempts=5, deadline_s=900, ready_s=600),
                             **ASK):  # type: ignore[arg-type]
        deltas.append(delta)
        tokens += delta.tokens
        if tokens >= KILL_AFTER and not killed:
            kill()
            killed = True
    return deltas


def check_resumed(deltas: list[ChatDelta], reference: list[ChatDelta]) -> int:
    marks = [delta.resumed for delta in deltas if delta.resumed is not None]
    assert len(marks) >= 1, "the stream was never cut: the answer ended before the kill landed"
    assert ids(deltas) == ids(reference)
    assert text(deltas) == text(reference)
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["length"]
    usage = [d.usage for d in deltas if d.usage is not None]
    assert len(usage) == 1 and usage[0].completion_tokens == MAX_TOKENS == len(ids(deltas))
    assert usage[0].prompt_tokens == reference[-1].usage.prompt_tokens  # type: ignore[union-attr]
    assert KILL_AFTER <= marks[0].after_tokens < MAX_TOKENS
    return marks[0].after_tokens


@pytest.mark.engine
@pytest.mark.timeout(3600)  # a hang guard: serve restarts vLLM twice mid-test, more when a cut is retried
def test_a_greedy_answer_cut_by_sigkill_resumes_token_for_token(
        long_context_state_dir: Path, kill_tolerant_profile: str) -> None:
    state_dir = long_context_state_dir
    for serve in start_serve(state_dir, "-p", kill_tolerant_profile, "--set", f"max_model_len={LONG_CONTEXT}"):
        ready = serve.wait_message("READY=1")
        base_url = f"http://127.0.0.1:{serve.port}"
        reference = list(stream_chat(MESSAGES, base_url=base_url, **ASK))  # type: ignore[arg-type]
        assert len(ids(reference)) == MAX_TOKENS

        after_engine, ready = cut_until_resumed(serve, "EngineCore", reference, ready)
        after_api, ready = cut_until_resumed(serve, "vllm.entrypoints.openai.api_server", reference, ready)
        print(f"\nresumed after {after_engine} tokens (EngineCore killed) and {after_api} tokens (API server "
              f"killed); {MAX_TOKENS} token ids equal to the uncut answer both times")
