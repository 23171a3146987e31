"""The classifier's rules written from corpus/dev22 (scored fresh first: 5 of 6 named right with the rules of this
round written before it existed; 6 threads of vllm-project/vllm, all V0), each test citing its log and the public
thread it came from. None of these logs is in the frozen test half (tests/logcorpus.py), which no test reads. Every
text is read by both of troubleshoot's readers, which must agree."""

from __future__ import annotations

from tests.logcorpus import LOGS
from tests.logreaders import found, named

DEV22 = LOGS / "corpus" / "dev22"


def test_an_oom_said_in_a_title_is_placed_by_the_tracebacks_frames() -> None:
    """vllm-project/vllm#15942 (dev22 runtime_oom 003): the title "[Bug]: Out of Memory in Concurrent Request" (a
    capital M the OOM words missed) over a V0 traceback through `step_async` / `execute_model_async` whose exception
    line the paste lost. It was `engine_dead`: the reporter's OOM is now read, and placed where the traceback was,
    the engine's step while serving."""
    [first, *_] = found(DEV22 / "runtime_oom" / "003_v07_v08_v0_concurrent_requests_engine_loop.log")
    assert first.category == "runtime_oom" and "reporter's words" in first.title
    cut = ["# title: OUT OF MEMORY when loading", "Traceback (most recent call last):",
           '  File "/x/vllm/model_executor/model_loader/loader.py", line 1, in load_model',
           "    model.load_weights(weights)"]
    assert named(cut)[0][0] == "weights_oom"
