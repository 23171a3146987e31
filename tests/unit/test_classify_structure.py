"""The classifier's structural rules, each on a short log written here (no corpus log is copied): the
exception and its traceback frames, the numbers in a message, the phase reached, wrapped and prefixed
lines, cut excerpts, client-side tracebacks, and the hard negatives that must stay quiet."""

from __future__ import annotations

import io

import pytest

from qwenops.vllmlog.classify import classify_text, frame_phase
from qwenops.vllmlog.lines import normalise, read_log
from tests.logreaders import findings_of_both_readers

OOM = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.00 GiB."


def frame(func: str, file: str = "/venv/lib/python3.12/site-packages/vllm/worker/x.py") -> str:
    return f'  File "{file}", line 10, in {func}'


def categories(lines: list[str]) -> list[str]:
    return [f.category for f in classify_text(lines)]


def both_readers(text: str) -> list[str]:
    """Categories from reading every line and from the block scanner: they must agree."""
    return [f.category for f in findings_of_both_readers(text)]


@pytest.mark.parametrize(("frames", "phase"), [
    ([("/v/vllm/model_executor/model_loader/loader.py", "load_model")], "weights"),
    ([("/v/vllm/model_executor/models/llama.py", "__init__")], "weights"),  # 0.1's model constructing its layers
    ([("/v/vllm/worker/model_runner.py", "capture_model"), ("/v/vllm/worker/model_runner.py", "_dummy_run")],
     "capture"),  # capture runs _dummy_run too: capture wins
    ([("/v/vllm/v1/worker/gpu_worker.py", "determine_available_memory")], "profile"),
    ([("/v/vllm/v1/core/kv_cache_utils.py", "_check_enough_kv_cache_memory")], "kv_check"),
    ([("/v/zmq/sugar/socket.py", "bind")], "bind"),
    ([("/v/transformers/configuration_utils.py", "from_pretrained")], "model_files"),
    ([("", "load_model")], "weights"),  # `collective_rpc("load_model")` in a code line
    ([("/v/httpcore/_sync/http11.py", "_receive_event")], "client_read"),
    ([("/v/vllm/v1/engine/core.py", "run_engine_core")], None),
])
def test_frames_name_vllms_phase_across_versions(frames: list[tuple[str, str]], phase: str | None) -> None:
    assert frame_phase(frames) == phase


def test_an_oom_under_model_construction_is_weights_not_runtime() -> None:
    log = ["Traceback (most recent call last):", frame("__init__", "/v/vllm/model_executor/models/llama.py"),
           "    self.weight = Parameter(torch.empty(", OOM]
    assert categories(log)[0] == "weights_oom"


def test_an_oom_in_the_profiling_run_is_profile_oom_even_after_the_weights_loaded() -> None:
    log = ["INFO 01-01 00:00:00 [gpu_model_runner.py:1] Model loading took 12.0 GiB",
           "Traceback (most recent call last):", frame("determine_available_memory"), frame("_dummy_run"), OOM]
    assert categories(log)[0] == "profile_oom"


def test_an_excerpt_cut_before_the_exception_is_named_by_its_frames() -> None:
    cut = ["[rank0]: Traceback (most recent call last):", "[rank0]: " + frame("_init_executor"),
           '[rank0]:     self.collective_rpc("load_model")']
    found = classify_text(cut)
    assert found[0].category == "weights_oom" and "excerpt ends before" in found[0].title
    assert categories(["Traceback (most recent call last):", frame("bind", "/v/zmq/sugar/socket.py")]) \
        == ["port_in_use"]


def test_a_cut_traceback_with_no_phase_is_unclassified_not_silent() -> None:
    found = classify_text(["Traceback (most recent call last):", frame("main", "/srv/app.py")])
    assert [(f.category, f.severity) for f in found] == [("unclassified", "error")]


def test_an_exception_no_rule_explains_is_unclassified_with_its_line() -> None:
    log = ["INFO 01-01 00:00:00 [core.py:1] Starting to load model /m", "Traceback (most recent call last):",
           frame("load_weights"), "KeyError: 'model.layers.0.mlp.gate_up_proj.qweight'"]
    first = classify_text(log)[0]
    assert (first.category, first.severity) == ("unclassified", "error")
    assert first.line == "KeyError: 'model.layers.0.mlp.gate_up_proj.qweight'"
    assert "while loading the weights" in first.title and first.fix


def test_the_cause_of_an_engine_death_comes_first() -> None:
    log = ["ERROR 01-01 00:00:00 [core.py:1] RuntimeError: CUDA error: an illegal memory access was encountered",
           "ERROR 01-01 00:00:01 [async_llm.py:1] vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered "
           "an issue. See stack trace (above) for the root cause."]
    found = classify_text(log)
    assert [f.category for f in found] == ["unclassified", "engine_dead"]
    assert found[1].severity == "info"


def test_negative_kv_memory_is_no_blocks() -> None:
    log = ["INFO 01-01 00:00:00 worker.py:1] model weights take 7.20GiB; the rest of the memory reserved for "
           "KV Cache is -0.42GiB.", "INFO 01-01 00:00:00 executor_base.py:1] # cuda blocks: 0, # CPU blocks: 2048"]
    assert categories(log)[0] == "kv_cache_no_blocks"


def test_blocks_that_hold_fewer_tokens_than_max_model_len_give_the_number() -> None:
    log = ["INFO 01-01 00:00:00 llm_engine.py:1] Initializing an LLM engine with config: model='/m', "
           "max_seq_len=8192, tensor_parallel_size=1", "INFO 01-01 00:00:01 llm_engine.py:2] # GPU blocks: 300, "
           "# CPU blocks: 512", "Traceback (most recent call last):", frame("from_engine_args")]
    first = classify_text(log)[0]
    assert first.category == "max_len_exceeds_kv" and "max_model_len to 4800" in first.fix
    assert first.change == {"max_model_len": 4800}
    healthy = [log[0].replace("8192", "4096"), log[1]]
    assert classify_text(healthy) == []


def test_an_oom_leaving_memory_to_other_processes_says_so_first() -> None:
    oom = ("torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.00 GiB (GPU 0; 24.00 GiB total "
           "capacity; 6.00 GiB already allocated; 200.00 MiB free; 6.10 GiB reserved in total by PyTorch)")
    assert categories([oom])[:2] == ["insufficient_free_memory", "runtime_oom"]
    alone = oom.replace("6.10 GiB reserved", "23.50 GiB reserved")
    assert categories([alone]) == ["runtime_oom"]


def test_a_hard_wrapped_message_is_joined_back() -> None:
    message = ("(EngineCore_DP0 pid=7) ValueError: Free memory on device cuda:0 (10.5/23.5 GiB) on startup is less t"
               "han desired GPU memory utilization (0.9, 21.2 GiB). Decrease GPU memory utilization.")
    wrapped = "\n".join(message[i:i + 80] for i in range(0, len(message), 80)) + "\n"
    assert both_readers(wrapped)[0] == "insufficient_free_memory"


def test_a_wrapped_frame_name_is_joined_and_an_unindented_code_line_is_not() -> None:
    text = (f"{frame('_initialize_k', '/opt/venv/lib/python3.12/site-packages/vllm/v1/engine/core.py')}\n"
            "v_caches\n"
            f"{frame('x' * 10, '/opt/venv/lib/python3.12/site-packages/vllm/v1/engine/core_client.py')}\n"
            "raise RuntimeError(\"boom\")\n")
    lines = [line.text for line in read_log(io.BytesIO(text.encode()))]
    assert lines[0].endswith("in _initialize_kv_caches") and lines[-1] == 'raise RuntimeError("boom")'


def test_a_cut_kv_check_message_is_max_len() -> None:
    log = ["ValueError: To serve at least one request with the model's max seq len (65536), (8.00 GiB KV cach"]
    assert categories(log) == ["max_len_exceeds_kv"]


@pytest.mark.parametrize(("raw", "clean"), [
    ("[rank0]: RuntimeError: x", "RuntimeError: x"),
    ("(VllmWorker rank=3 pid=1090) ERROR e", "ERROR e"),
    ("[2025-01-01T00:00:00Z] (ApiServer_1 pid=2) INFO x", "INFO x"),
    ("  | [2025-01-01T00:00:00Z] ERROR:    e", "ERROR:    e"),
    ("(pid=4421) INFO x", "INFO x"),
    ("> ValueError: quoted", "ValueError: quoted"),
])
def test_more_wrappers_are_stripped(raw: str, clean: str) -> None:
    assert normalise(raw) == clean


@pytest.mark.parametrize(("line", "category"), [
    ("httpx.RemoteProtocolError: peer closed connection without sending complete message body (incomplete chunked "
     "read)", "stream_interrupted"),
    ("aiohttp.client_exceptions.ClientPayloadError: Response payload is not completed", "stream_interrupted"),
    ("requests.exceptions.ChunkedEncodingError: ('Connection broken: IncompleteRead(0 bytes read)')",
     "stream_interrupted"),
    ("httpx.ReadTimeout: timed out", "client_timeout"),
    ("openai.APITimeoutError: Request timed out.", "client_timeout"),
    ("openai.AuthenticationError: Error code: 401 - {'error': 'Unauthorized'}", "auth"),
])
def test_client_side_tracebacks(line: str, category: str) -> None:
    assert categories(["Traceback (most recent call last):", frame("create", "/v/openai/_base_client.py"), line])[0] \
        == category


def test_a_client_read_cut_before_its_exception_is_a_client_timeout_or_a_cut_stream() -> None:
    log = ["Traceback (most recent call last):", frame("_receive_response_body", "/v/httpcore/_sync/http11.py"),
           frame("_receive_event", "/v/httpcore/_sync/http11.py")]
    first = classify_text(log)[0]
    assert first.category == "client_timeout" and "stream_interrupted" in first.fix


def test_a_media_download_cut_mid_body_is_media_fetch_error() -> None:
    log = ["Traceback (most recent call last):", frame("fetch_image_async", "/v/vllm/multimodal/utils.py"),
           "aiohttp.client_exceptions.ClientPayloadError: Response payload is not completed"]
    assert categories(log)[0] == "media_fetch_error"


def test_a_401_in_the_access_log_is_auth_not_an_error() -> None:
    found = classify_text(['INFO:     10.0.0.1:5 - "POST /v1/chat/completions HTTP/1.1" 401 Unauthorized'])
    assert [(f.category, f.severity) for f in found] == [("auth", "warning")]


def test_shared_memory_wait_is_benign_when_progress_follows_and_a_stall_when_not() -> None:
    wait = ("INFO 01-01 00:01:00 [shm_broadcast.py:1] No available shared memory broadcast block found in 60 seconds. "
            "This typically happens when some processes are hanging.")
    capture = "INFO 01-01 00:00:00 [gpu_model_runner.py:1] Capturing CUDA graphs (mixed prefill-decode, PIECEWISE)"
    finished = "INFO 01-01 00:02:00 [gpu_model_runner.py:2] Graph capturing finished in 95 secs, took 0.80 GiB"
    assert classify_text([capture, wait, finished, "INFO:     Application startup complete."]) == []
    assert categories([capture, wait]) == ["engine_stalled"]


def test_benign_lines_stay_quiet() -> None:
    healthy = [
        "WARNING 01-01 00:00:00 [config.py:1] Casting torch.bfloat16 to torch.float16.",
        "/v/torch/cuda/__init__.py:1: UserWarning: something is deprecated",
        "  warnings.warn(",
        "INFO 01-01 00:00:01 [executor_base.py:1] # cuda blocks: 2048, # CPU blocks: 512",
        "INFO 01-01 00:00:02 [gpu_worker.py:1] Available KV cache memory: 12.50 GiB",
        "INFO:     Application startup complete.",
        "^CINFO:     Shutting down",
        "asyncio.exceptions.CancelledError",
        "KeyboardInterrupt",
    ]
    assert [f for f in classify_text(healthy) if f.severity == "error"] == []


def test_an_oom_pasted_before_its_phase_lines_is_placed_by_the_phase_reached() -> None:
    log = ["Error initializing vLLM engine: CUDA out of memory. Tried to allocate 112.00 MiB.",
           "INFO 01-01 00:00:00 model_runner.py:1] Capturing the model for CUDA graphs."]
    assert categories(log)[0] == "cudagraph_oom"


def test_an_unexplained_error_line_is_reported_when_nothing_else_is() -> None:
    found = classify_text(["INFO 01-01 00:00:00 [api_server.py:1] started",
                           "ERROR 01-01 00:00:01 [worker.py:1] something unexpected happened in the worker"])
    assert [(f.category, f.severity) for f in found] == [("unclassified", "error")]


def test_a_broken_compiled_extension_is_unclassified_with_its_line() -> None:
    line = ("WARNING 01-01 00:00:00 _custom_ops.py:1] Failed to import from vllm._C with ImportError("
            "'/v/vllm/_C.abi3.so: undefined symbol: _ZN3c104cuda9SetDeviceEi')")
    found = classify_text([line])
    assert [(f.category, f.severity) for f in found] == [("unclassified", "error")]
    assert line.endswith(found[0].line) and "undefined symbol" in found[0].line


def test_a_pretty_printed_unauthorized_answer_is_auth() -> None:
    assert categories(["curl http://host:8000/v1/models", "{", '  "error": "Unauthorized"', "}"]) == ["auth"]
