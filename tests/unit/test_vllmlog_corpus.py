"""The classifier on real dev-half logs, one test for each structural rule they led to; each cites its log and
the public thread it came from (tests/data/logs/corpus/*/index.json). corpus/dev2 is dev-only by construction
(tests/logcorpus.py): none of these logs is in the frozen test half, which no test reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwenops.troubleshoot.run import classify_source
from qwenops.troubleshoot.sources import file_source
from qwenops.vllmlog.classify import Finding, classify_text
from qwenops.vllmlog.lines import continues, lines_of
from tests.logcorpus import LOGS, in_test_half, load_cases

DEV2 = LOGS / "corpus" / "dev2"
DEV2_INDEX = json.loads((DEV2 / "index.json").read_text(encoding="utf-8"))
# Where troubleshoot names a dev2 log otherwise than its thread's root cause, and why.
DEV2_NAMED_OTHERWISE: dict[str, str | None] = {}


def findings(path: Path) -> list[Finding]:
    """What `troubleshoot --log PATH` finds (the block scanner, as the CLI reads a file)."""
    found, _ = classify_source(file_source(str(path)), {})
    return found


def test_dev2_is_never_in_the_test_half() -> None:
    cases = [case for case in load_cases() if case.collection == "corpus/dev2"]
    assert len(cases) == len(DEV2_INDEX) and not any(in_test_half(case) for case in cases)


@pytest.mark.parametrize("entry", DEV2_INDEX, ids=lambda e: e["file"])
def test_every_dev2_log_is_named_right(entry: dict[str, str]) -> None:
    found = findings(DEV2 / entry["file"])
    want = DEV2_NAMED_OTHERWISE.get(entry["file"], entry["category"])
    if want == "healthy":
        assert [f.category for f in found if f.severity == "error"] == []
        return
    aliases = {"high_latency": {"kv_cache_full", "kv_cache_preemption", "high_latency_cpu"}}
    assert found and found[0].category in {want} | aliases.get(str(want), set()), [f.category for f in found]
    assert found[0].fix and found[0].evidence[0].quote


def test_pydantics_reason_on_the_indented_line_belongs_to_its_head() -> None:
    """vllm-project/vllm#26161 (dev2 003) and OpenSQZ/MiniCPM-V-CookBook#51 (dev2 004): pydantic puts vLLM's
    reason under "1 validation error for ModelConfig"; the block scanner must see it too (it is no candidate
    line of its own), so the two lines are one."""
    assert continues("pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig",
                     "  Value error, Expecting value: line 1 column 1 (char 0)")
    for name in ("invalid_config/003_modelconfig_validation_minicpm_v45.log",
                 "invalid_config/004_modelconfig_validation_apiserver_prefix.log"):
        first = findings(DEV2 / name)[0]
        assert first.category == "invalid_config" and "Value error, Expecting value" in first.line


def test_a_message_wrapped_at_a_blank_before_a_parenthesis_is_joined() -> None:
    """vllm-project/vllm-ascend#4496 (dev2 006): the terminal cut "... the derived max_model_len " and the next
    line starts "(max_position_embeddings=8192"; the limit is read across the cut. A process tag is not a cut."""
    first = findings(DEV2 / "invalid_config/006_ascend_qwen2_audio_max_len_16384_wrapped.log")[0]
    assert first.category == "invalid_config" and "to 8192" in first.fix
    long_line = "x" * 90 + " "
    assert continues(long_line, "(max_position_embeddings=8192 or model_max_length=None in model's config.json).")
    assert not continues(long_line, "INFO 01-01 00:00:00 [core.py:1] next record")
    assert not continues("x" * 90, "(max_position_embeddings=8192 ...")  # no blank at the cut: a new line


def test_a_task_the_model_does_not_support_is_a_configuration_vllm_refused() -> None:
    """vllm-project/vllm#9761 (dev2 007): `--task embedding` on a generative model (vLLM 0.6.3)."""
    first = findings(DEV2 / "invalid_config/007_v063_task_embedding_on_generative_model.log")[0]
    assert (first.category, first.severity) == ("invalid_config", "error")


def test_a_shared_memory_wait_is_a_stall_only_after_the_server_served() -> None:
    """gpustack/gpustack#3888 (dev2 020): the wait alone, printed while DeepSeek-V3.2 loads, is vLLM's notice of
    time-consuming work (closed wontfix): a warning. vllm-project/vllm-omni#2928 (dev2 019): the same wait after
    the server served, and only clients' polls after it, is a stalled engine: an error."""
    loading = findings(DEV2 / "healthy/020_gpustack_v011_slow_load_shm_wait.log")
    assert [(f.category, f.severity) for f in loading] == [("engine_stalled", "warning")]
    serving = findings(DEV2 / "engine_stalled/019_omni_wan22_shm_wait_after_14h_polling.log")
    assert (serving[0].category, serving[0].severity) == ("engine_stalled", "error")


def test_requests_waiting_while_none_runs_and_the_cache_has_room_are_a_stall() -> None:
    """vllm-project/vllm (corpus/b engine_stalled 061, V0 0.6 multi-step): 22 requests pending, none running, no
    token, the KV cache empty: the scheduler admits nothing. A busy server with a queue is not that."""
    first = findings(LOGS / "corpus/b/engine_stalled/061_v06_multistep_chunked_prefill_pending_grows.log")[0]
    assert (first.category, first.severity) == ("engine_stalled", "warning") and "22 waiting" in first.fix
    healthy = ("INFO 03-17 15:38:10 [loggers.py:259] Engine 000: Avg prompt throughput: 0.0 tokens/s, Avg generation "
               "throughput: 0.0 tokens/s, Running: 0 reqs, Waiting: 0 reqs, GPU KV cache usage: 0.0%")
    full = healthy.replace("Waiting: 0", "Waiting: 9").replace("usage: 0.0%", "usage: 99.1%")
    assert classify_text([healthy]) == []
    assert "engine_stalled" not in [f.category for f in classify_text([full])]


@pytest.mark.parametrize("name", ["corpus/b/client_timeout/044_evalscope_r1_30k_tokens_retrying_then_timeout.log",
                                  "corpus/d/client_timeout/002_evalscope_openai_retrying_chat_completions.log",
                                  "corpus/b/client_timeout/082_gpt_researcher_openai_retrying_one_line_traceback.log"])
def test_the_openai_clients_retries_are_client_side_evidence(name: str) -> None:
    """evalscope and gpt-researcher against vLLM (corpus b/d client_timeout): openai's `Retrying request to
    /chat/completions` (cut mid-word, behind a progress bar) is a request that failed and was sent again; a
    traceback through openai's client (a Windows path) cut after those retries is the client giving up."""
    first = findings(LOGS / name)[0]
    assert first.category == "client_timeout"


def test_an_ipython_traceback_is_a_traceback() -> None:
    """langchain's openai client in Jupyter (corpus/b request_too_long 033): frames are `File ~/...py:119, in
    f(...)`; a log that holds a traceback is never "no error found", even when its exception line is cut."""
    found = findings(LOGS / "corpus/b/request_too_long/033_langchain_openai_client_8192_vs_254457.log")
    assert found and found[0].severity == "error"
    jupyter = ["File ~/venv/lib/python3.8/site-packages/openai/_base_client.py:919, in SyncAPIClient.request(self)",
               "    917 def request(", "BadRequestError: Error code: 400"]
    assert [f.category for f in classify_text(jupyter)] == ["unclassified"]
    assert next(iter(lines_of(jupyter))).text.startswith("File ~/venv")


def test_a_dtype_the_quantization_cannot_run_in_is_a_configuration_vllm_refused() -> None:
    """vllm-project/vllm#13150 (dev2 027): an AWQ checkpoint served in bfloat16 (vLLM 0.7.2)."""
    first = findings(DEV2 / "invalid_config/027_v07_awq_with_bfloat16_dtype.log")[0]
    assert (first.category, first.severity) == ("invalid_config", "error")


def test_v06s_background_task_failure_is_the_engine_dying_after_its_preemption() -> None:
    """vllm-project/vllm#8219 (dev2 029): 0.6.1 words it "is preempted in PreemptionMode" and "Engine background
    task failed"; the engine's death is the error, the preemption that triggered it a warning beside it."""
    found = findings(DEV2 / "engine_dead/029_v061_preempted_then_background_task_failed.log")
    assert [(f.category, f.severity) for f in found] == [("engine_dead", "error"), ("kv_cache_preemption", "warning")]
