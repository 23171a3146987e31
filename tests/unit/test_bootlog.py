"""bootlog against real logs: the public failure logs (vLLM issues) and the CPU engine's own failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwenops.supervisor.bootlog import BootLog, Phase, classify, strip_prefix

LOGS = Path(__file__).resolve().parent.parent / "data" / "logs"
PUBLIC = LOGS / "public"
INDEX = json.loads((PUBLIC / "index.json").read_text())
# request_too_long happens in service and is troubleshoot's business, not a start-up failure; the
# runtime_oom excerpt lacks its OOM line (index.json notes) and is tested as an engine death below.
NOT_STARTUP = {"request_too_long", "healthy", "runtime_oom"}


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("entry", [e for e in INDEX if e["category"] not in NOT_STARTUP], ids=lambda e: e["file"])
def test_public_failure_log_gets_its_category(entry: dict[str, str]) -> None:
    cause = classify(lines(PUBLIC / entry["file"]))
    assert cause is not None, entry["file"]
    assert cause.category == entry["category"]
    assert cause.line in {strip_prefix(line) for line in lines(PUBLIC / entry["file"])} or cause.line.endswith("...")


@pytest.mark.parametrize("name", ["28_healthy.log", "26_request_too_long.log"])
def test_logs_without_a_startup_failure_give_no_cause(name: str) -> None:
    assert classify(lines(PUBLIC / name)) is None


def test_a_traceback_after_requests_were_served_is_not_start_up_evidence() -> None:
    # The engine died in service (its cause cut off): the runner restarts on the exit, nothing is FATAL.
    assert classify(lines(PUBLIC / "15_runtime_oom.log")) is None


def test_max_len_fix_without_vllms_estimate_names_the_requested_length() -> None:
    # The public excerpt is cut before "estimated maximum model length is N".
    cause = classify(lines(PUBLIC / "08_max_len_exceeds_kv.log"))
    assert cause is not None and "below 131072" in cause.fix


def test_max_len_fix_quotes_vllms_own_estimate() -> None:
    line = (
        "(EngineCore_DP0 pid=1) ValueError: To serve at least one request with the model's max seq len (40960), "
        "(6.25 GiB KV cache is needed, which is larger than the available KV cache memory (1.71 GiB). Based on the "
        "available memory, the estimated maximum model length is 11200. Try increasing `gpu_memory_utilization`"
    )
    cause = classify([line])
    assert cause is not None and cause.category == "max_len_exceeds_kv"
    assert cause.fix.startswith("lower max_model_len to 11200")
    assert not cause.retryable


def test_free_memory_fix_computes_a_utilization_that_fits() -> None:
    cause = classify(lines(PUBLIC / "11_insufficient_free_memory.log"))
    assert cause is not None
    assert "lower gpu_memory_utilization to 0.93" in cause.fix  # 22.76 / 24.0 = 0.948 -> 0.94 - 0.01
    assert cause.retryable  # another process may free the memory


def test_specific_cause_beats_the_generic_engine_failure_printed_after_it() -> None:
    cause = classify(lines(PUBLIC / "03_kv_cache_no_blocks.log"))
    assert cause is not None and cause.category == "kv_cache_no_blocks"


@pytest.mark.parametrize(
    ("name", "category", "fix_part"),
    [
        ("vllm_cpu_model_missing.log", "model_not_found", "model:"),
        ("supervisor/cpu_unrecognized_flag.log", "invalid_argument", "extra_args"),
        ("vllm_cpu_bad_flag.log", "invalid_config", "lower max_model_len to 4096"),
        ("vllm_cpu_port_in_use.log", "port_in_use", "--port"),
    ],
)
def test_real_cpu_engine_failures(name: str, category: str, fix_part: str) -> None:
    """tests/data/logs/README.md describes each capture; the unrecognized flag is this branch's own."""
    cause = classify(lines(LOGS / name))
    assert cause is not None
    assert (cause.category, cause.retryable) == (category, category == "port_in_use")
    assert fix_part in cause.fix


def test_a_healthy_real_boot_with_its_scary_looking_warnings_has_no_cause() -> None:
    text = (LOGS / "vllm_cpu_boot.log").read_text()
    assert "Too many open files" in text  # the ulimit warning README.md says must not be flagged
    assert classify(text.splitlines()) is None


def test_phases_of_a_real_cpu_boot_move_forward_only() -> None:
    boot = BootLog()
    seen = [phase for line in lines(LOGS / "vllm_cpu_boot.log") if (phase := boot.feed(line))]
    assert seen == [
        Phase.CONFIGURING, Phase.LOADING_WEIGHTS, Phase.PROFILING, Phase.KV_CACHE, Phase.WARMUP,
        Phase.API_STARTING, Phase.SERVING,
    ]
    assert boot.cause is None
    assert boot.feed("(Worker pid=5) INFO Starting to load model /m...") is None  # never backwards
    assert boot.phase is Phase.SERVING


def test_cuda_graph_capture_is_the_warm_up_phase_on_gpu() -> None:
    boot = BootLog()
    for line in lines(PUBLIC / "13_cudagraph_oom.log")[:9]:
        boot.feed(line)
    assert boot.phase is Phase.WARMUP


def test_long_lines_are_quoted_shortened_and_the_message_is_one_line() -> None:
    cause = classify(lines(PUBLIC / "01_weights_oom.log"))
    assert cause is not None and len(cause.line) <= 300
    assert "\n" not in cause.message() and cause.message().startswith("the weights do not fit")


def test_engine_killed_under_a_real_cpu_server_is_seen_at_vllms_first_word() -> None:
    boot = BootLog()
    for line in lines(LOGS / "vllm_cpu_engine_killed.log"):
        boot.feed(line)
    assert boot.engine_death is not None
    assert "engine core exited unexpectedly" in boot.engine_death  # printed before the EngineDeadError
    assert boot.cause is None  # in service: a restart, never a FATAL cause


def test_a_model_loaded_for_embeddings_is_unservable_for_chat() -> None:
    # Seen here with a tiny-model build whose config.json lacked `architectures`.
    boot = BootLog()
    boot.feed("(APIServer pid=14868) INFO 11-25 16:15:29 [entry.py:136] Supported tasks: ['embed', 'token_embed']")
    boot.feed("ERROR: [Errno 98] error while attempting to bind on address: address already in use")
    assert boot.unservable is not None and boot.cause == boot.unservable
    assert boot.cause.category == "model_not_generative" and "architectures" in boot.cause.fix


def test_a_generative_model_is_servable() -> None:
    boot = BootLog()
    boot.feed("(APIServer pid=3719) INFO 11-25 16:02:59 [entry.py:136] Supported tasks: ['generate']")
    assert boot.unservable is None and boot.cause is None


SERVING_LOG = [
    "(APIServer pid=7) INFO 11-25 16:07:37 [entry.py:136] Supported tasks: ['generate']",
    "(APIServer pid=7) INFO:     Application startup complete.",
    '(APIServer pid=7) INFO:     127.0.0.1:40312 - "GET /health HTTP/1.1" 200 OK',
]


@pytest.mark.parametrize("prompt", [
    "Supported tasks: ['embed']",  # would stop a healthy server as unservable
    "Repository Not Found",  # would make the next ordinary crash FATAL
    "EngineDeadError",  # would force a restart
    "Engine core process EngineCore_DP0 died unexpectedly",
])
def test_a_prompt_quoted_by_the_request_logger_is_never_evidence(prompt: str) -> None:
    # vLLM 0.8-0.10 log every prompt by default, with the logger prefix in front of it.
    request_line = (f"(APIServer pid=7) INFO 11-25 16:09:01 [logger.py:43] Received request chatcmpl-1: "
                    f"prompt: '<|im_start|>user\\n{prompt}<|im_end|>', params: SamplingParams(n=1)")
    for seen_before in (SERVING_LOG, []):  # also a request racing the first readiness probe
        boot = BootLog()
        for line in seen_before:
            boot.feed(line)
        boot.feed(request_line)
        assert (boot.cause, boot.unservable, boot.engine_death) == (None, None, None)


def test_after_the_first_request_other_lines_quoting_users_are_not_evidence_either() -> None:
    boot = BootLog()
    for line in SERVING_LOG:
        boot.feed(line)
    boot.feed("WARNING 11-25 16:09:02 [serving_chat.py:200] model 'Repository Not Found' does not exist")
    boot.feed("INFO 11-25 16:09:02 [x.py:1] Supported tasks: ['embed']")
    assert (boot.cause, boot.unservable) == (None, None)


def test_the_runner_marks_serving_so_fatal_rules_stop_at_readiness() -> None:
    boot = BootLog()
    boot.serving = True  # what the runner sets at the first good readiness probe
    boot.feed("ERROR 11-25 16:09:02 [x.py:1] huggingface_hub.errors.RepositoryNotFoundError: Repository Not Found")
    assert boot.cause is None


def test_real_engine_death_lines_are_seen_with_and_without_the_logger_prefix() -> None:
    for line in (
        "(APIServer pid=1) ERROR 08-21 21:56:03 [serving_chat.py:932] vllm.v1.engine.exceptions.EngineDeadError: "
        "EngineCore encountered an issue. See stack trace (above) for the root cause.",
        "(APIServer pid=1) RuntimeError: Engine core process EngineCore_DP0 died unexpectedly.",
        "ERROR 11-25 16:08:41 [multiproc_executor.py:316] Worker proc VllmWorker-0 died unexpectedly (exit code: -9)",
        "INFO 10-12 00:26:58 core.py:12] Engine core process EngineCore_0 died unexpectedly.",  # vLLM < 0.6 prefix
    ):
        boot = BootLog()
        boot.feed(line)
        assert boot.engine_death is not None, line


def test_a_server_line_is_read_as_far_as_a_log_line_is() -> None:
    """Audit 10, F3: serve reads every line its server prints (up to 64 KiB each) through the log reader's clean-up;
    only the first MAX_LINE_CHARS are read, as troubleshoot reads a log, so one line's cost is bounded too."""
    from qwenops.supervisor.bootlog import strip_prefix
    from qwenops.vllmlog.lines import MAX_LINE_CHARS

    assert len(strip_prefix("(APIServer pid=1) INFO " + "a" * 60_000)) <= MAX_LINE_CHARS
    assert strip_prefix("(APIServer pid=1) INFO ready") == "INFO ready"
