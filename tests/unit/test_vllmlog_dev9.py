"""The classifier's rules written from corpus/dev9, each test citing its log and the public thread it came from.
None of these logs is in the frozen test half (tests/logcorpus.py), which no test reads. The rules read the
reporter's own words where the log names nothing (a status said with the key it was sent with, an answer called
garbage or random, a generation that does not terminate), never one log's sentence. Every text is read by both of
troubleshoot's readers, which must agree."""

from __future__ import annotations

from tests.logcorpus import LOGS
from tests.logreaders import findings_of_both_readers, found

DEV9 = LOGS / "corpus" / "dev9"


def categories_of(lines: list[str]) -> list[str]:
    return [f.category for f in findings_of_both_readers("\n".join(lines))]


def test_a_401_the_reporter_says_requests_get_with_the_api_key_is_auth_where_the_log_names_nothing() -> None:
    """infiniflow/ragflow#3144 (dev9 auth 022): "加入api-key后 就提示401" — vLLM started with an API key, RAGFlow's
    requests refused. A 401 or 403 said on a line that names the key, the bearer token or the refusal, in any
    language, is an auth warning where nothing else is found; a 401 among other digits (a port, a pid, a size, a
    version) or with no key named is no report."""
    [finding] = found(DEV9 / "auth/022_ragflow_openai_compatible_vllm_api_key_401_prose.log")
    assert finding.category == "auth" and finding.severity == "warning"
    for said in ("After I set --api-key every request returns 401.", "with the Bearer token it still says 403",
                 "401 Unauthorized when I call it from Open WebUI", "配置密钥后返回403"):
        assert categories_of(["I run vllm serve on my server.", said]) == ["auth"], said
    for other in ("the api-key is in port 14010 and pid 4013", "api_key set, latency 0.401 s", "it returns 401",
                  "api-key 401.5 MB downloaded"):
        assert categories_of(["I run vllm serve on my server.", other]) == [], other
    # A log line is no report, and a cause the log names comes first.
    assert categories_of(["INFO 01-01 00:00:00 api-key 401 check"]) == []


def test_an_answer_the_reporter_calls_garbage_or_random_is_incoherent_where_the_log_names_nothing() -> None:
    """vllm-project/vllm#2714 (dev9 incoherent_output 014): "Output Garbage Text in Mixtral 8x7b Post Upgrade to
    0.3.0" over a word salad in two hard-wrapped lines; vllm-project/vllm#9409 (dev9 015): "v0.6.x is much easier to
    generate random output" over an answer repeating '-SIP'. Garbage text/output/tokens/characters and random
    output/text/characters/tokens are a reporter's words for an incoherent answer; a benchmark's random dataset
    (--random-output-len, random_output_len) and garbage collection are not."""
    for path in ("incoherent_output/014_v030_mixtral_8x7b_garbage_text_after_upgrade.log",
                 "incoherent_output/015_v062_symbols_in_prompt_sip_repetition_table_output.log"):
        [finding] = found(DEV9 / path)
        assert finding.category == "incoherent_output" and finding.severity == "warning", path
    for said in ("the model answers with garbage output since the upgrade", "It generates random text sometimes.",
                 "we get Garbage Tokens in the reasoning field"):
        assert categories_of(["Serving Qwen on two GPUs.", said]) == ["incoherent_output"], said
    for other in ("vllm bench serve --dataset-name random --random-output-len 128", "random_output_len=128",
                  "Python garbage collection took 2 s"):
        assert categories_of(["Serving Qwen on two GPUs.", other]) == [], other


def test_a_generation_the_reporter_says_does_not_terminate_is_an_endless_answer() -> None:
    """vllm-project/vllm#53717 (dev9 runaway_generation 011, 0.26.0 behind LiteLLM): "generation does not terminate
    and continues producing repetitive newline/whitespace tokens", one throughput line with Running: 1 reqs. An
    answer that does not (or never) terminates is the same report as one that does not stop: unclassified (outside
    troubleshoot's vocabulary), a warning, where the log names nothing."""
    [finding] = found(DEV9 / "runaway_generation/011_v0260_litellm_medgemma_newline_loop_running_1_reqs.log")
    assert finding.category == "unclassified" and finding.severity == "warning" and "stop" in finding.title
    assert categories_of(["The stream never terminates until max_tokens."]) == ["unclassified"]
    assert categories_of(["The server does not terminate TLS."]) == ["unclassified"]  # the words alone decide


def test_the_engine_clients_teardown_line_alone_is_a_warning_not_an_engine_death() -> None:
    """vllm-project/vllm#32468 (dev9 healthy 009, 0.14 offline LLM(runner="pooling")): the script ran to its end and
    printed "ERROR ... [core_client.py:605] Engine core proc EngineCore_DP0 died unexpectedly, shutting down client."
    as it exited. The engine client's line when its engine process ends is engine_dead, but with no traceback in any
    process and no other error it is a warning (a script's or server's teardown); a traceback anywhere, another
    error, or the supervisor's own reading keeps it an error."""
    [finding] = found(DEV9 / "healthy/009_v014_offline_pooling_embedding_engine_core_died_at_script_exit.log")
    assert finding.category == "engine_dead" and finding.severity == "warning"
    died = ("ERROR 01-16 17:16:49 [core_client.py:605] Engine core proc EngineCore_DP0 died unexpectedly, "
            "shutting down client.")
    for prefix in ("", "(APIServer pid=1) ", "vllm-1  | "):
        [alone] = findings_of_both_readers(prefix + died)
        assert (alone.category, alone.severity) == ("engine_dead", "warning"), prefix
    traceback = ["Traceback (most recent call last):",
                 '  File "/usr/lib/python3.12/site-packages/vllm/v1/engine/core.py", line 701, in run_engine_core',
                 "RuntimeError: CUDA error: an illegal memory access was encountered"]
    assert next(f.severity for f in findings_of_both_readers("\n".join([*traceback, died]))) == "error"
    dead = "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue. See stack trace (above)."
    assert next((f.category, f.severity) for f in findings_of_both_readers("\n".join([died, dead]))) == \
        ("engine_dead", "error")
