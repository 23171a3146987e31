"""The classifier's rules written from corpus/dev7 (and the dev logs of the same shapes), each test citing its log
and the public thread it came from, and the big-log prefilter's shape for a pasted answer. None of these logs is in
the frozen test half (tests/logcorpus.py), which no test reads. Each rule reads a structure, not a wording. Every
text is read by both of troubleshoot's readers, which must agree."""

from __future__ import annotations

from pathlib import Path

from qwenops.troubleshoot.run import classify_source
from qwenops.troubleshoot.sources import file_source
from qwenops.vllmlog.classify import CANDIDATE, looping
from tests.logcorpus import LOGS
from tests.logreaders import categories, findings_of_both_readers, found

CORPUS = LOGS / "corpus"
DEV7 = CORPUS / "dev7"
_THROUGHPUT = ("(APIServer pid=1) INFO 11-28 07:00:01 [loggers.py:257] Engine 000: Avg prompt throughput: 12.3 "
               "tokens/s, Avg generation throughput: 45.6 tokens/s, Running: 3 reqs, Waiting: 0 reqs, "
               "GPU KV cache usage: 4.2%, Prefix cache hit rate: 0.0%")
_ACCESS = '(APIServer pid=1) INFO:     127.0.0.1:40001 - "POST /v1/chat/completions HTTP/1.1" 200 OK'


def test_the_prefilter_finds_a_plain_text_loop_where_a_line_opens_with_it(tmp_path: Path) -> None:
    """vllm-project/vllm-ascend (corpus/dev6 incoherent_output 024, Kimi K2.5 W4A8 on two 910B nodes): the answer
    is "and the English and the ..." line after line, plain text. The big-log scanner's prefilter looks for sixteen
    plain words where a line (or a wrapper's `| `, `) `, `] `) opens, not at every word: counting words through every
    log line's prose made a 40 MB log's scan ~40% slower. The loop is still found behind the wrappers lines.py strips,
    in a paste and past the first megabyte of a big log; a log's own lines are no candidates for it, and a message's
    prose (a candidate after its logger's `] `) is no loop."""
    loop = ("h and the English and the English and the English and the English and the English and the English "
            "and the of the English and the English and the of the")
    for prefix in ("", "vllm-1  | ", "> ", "(VllmWorker pid=7) "):
        assert CANDIDATE.search((prefix + loop).encode()), prefix
        log = tmp_path / "big.log"
        log.write_text((_ACCESS + "\n" + _THROUGHPUT + "\n") * 6000 + "\n" + prefix + loop + "\n", encoding="utf-8")
        assert log.stat().st_size > 1 << 20
        findings, _ = classify_source(file_source(str(log)), {})
        assert [f.category for f in findings] == ["incoherent_output"], prefix
        assert findings_of_both_readers(prefix + loop)[0].category == "incoherent_output"
    assert not CANDIDATE.search(_THROUGHPUT.encode()) and not CANDIDATE.search(_ACCESS.encode())
    prose = ("(APIServer pid=1) WARNING 11-28 07:00:01 [config.py:1] the model you are loading has a generation "
             "config that sets default sampling parameters for every request unless you override them here")
    assert findings_of_both_readers("\n".join([_THROUGHPUT, prose, _ACCESS])) == []


def test_an_access_line_cut_inside_is_still_a_served_request(tmp_path: Path) -> None:
    """vllm-project/vllm#12233 (corpus/dev7 engine_dead 017): the paste ends inside uvicorn's access line
    (`INFO:     172.27.0.4:56768 - "POST /v1`), its status lost. Reading every line counts it as a served request
    by its head; the block scanner must too, or the two readers disagree on whether the server had served."""
    from qwenops.vllmlog.classify import SERVED, LogClassifier
    from qwenops.vllmlog.lines import read_log, scan_log

    log = tmp_path / "cut.log"
    log.write_text("INFO 01-22 00:13:30 api_server.py:1] vLLM API server version 0.6.6\n"
                   'INFO:     172.27.0.4:56768 - "POST /v1\n', encoding="utf-8")
    every, scanned = LogClassifier(), LogClassifier()
    with log.open("rb") as stream:
        for line in read_log(stream):
            every.feed(line)
    with log.open("rb") as stream:
        for line in scan_log(stream, CANDIDATE, SERVED):
            scanned.feed(line)
    assert every.serving and scanned.serving


def test_an_exception_through_the_servers_streaming_response_is_a_cut_stream() -> None:
    """vllm-project/vllm#9260 (dev7 stream_interrupted 016, 0.5.3.post1): the server answered 200, then
    "Exception in ASGI application" and a traceback through starlette's StreamingResponse (cut before its exception):
    the stream the client was reading ended early. No engine frame beside it, so the engine kept serving."""
    path = DEV7 / "stream_interrupted/016_v053_beam_search_best_of_5_stream_asgi_exception_after_200.log"
    assert categories(path)[0] == "stream_interrupted"
    whole = ['INFO:     10.0.30.100:45540 - "POST /v1/chat/completions HTTP/1.0" 200 OK',
             "ERROR:    Exception in ASGI application", "Traceback (most recent call last):",
             '  File "/usr/local/lib/python3.10/dist-packages/starlette/responses.py", line 265, in __call__',
             "    await wrap(partial(self.listen_for_disconnect, receive))",
             '  File "/usr/local/lib/python3.10/dist-packages/starlette/responses.py", line 261, in wrap',
             "    await func()", "ValueError: beam search is not supported with streaming"]
    assert findings_of_both_readers("\n".join(whole))[0].category == "stream_interrupted"
    # the same frames beside the engine's dead error are the engine's death
    dead = [*whole[:7], '  File "/usr/local/lib/python3.10/dist-packages/vllm/entrypoints/openai/serving_chat.py", '
            "line 574, in chat_completion_stream_generator", "vllm.v1.engine.exceptions.EngineDeadError: EngineCore "
            "encountered an issue. See stack trace (above) for the root cause."]
    assert findings_of_both_readers("\n".join(dead))[0].category == "engine_dead"


def test_a_device_fault_while_the_engine_ran_the_model_is_the_engines_death() -> None:
    """vllm-project/vllm#12625 (dev7 engine_dead 024): "Error in model execution: NCCL error: unhandled cuda error",
    then "Failed to pickle inputs of failed execution: CUDA error: an illegal memory access was encountered"; and
    vllm-project/vllm#8738 (dev7 023, 0.6.1): V0's "Exception in callback ... _log_task_completion" over a traceback
    through execute_model. A device or collective fault in a model execution, and the V0 engine loop's error
    callback, are the engine dying (not an unexplained crash); the same CUDA error at start-up stays unexplained."""
    assert categories(DEV7 / "engine_dead/024_v06x_tp_worker_nccl_unhandled_cuda_error_model_execution_pickle_"
                             "failed.log")[0] == "engine_dead"
    assert categories(DEV7 / "engine_dead/023_v061_docker_8xl4_70b_fp8_flashinfer_kv_exhausted_log_task_"
                             "completion.log")[0] == "engine_dead"
    serving = ['INFO:     172.27.0.4:32774 - "POST /v1/chat/completions HTTP/1.0" 200 OK',
               "RuntimeError: CUDA error: an illegal memory access was encountered"]
    assert findings_of_both_readers("\n".join(serving))[0].category == "engine_dead"
    startup = ["INFO 01-29 20:00:01 api_server.py:1] vLLM API server version 0.6.6",
               "RuntimeError: CUDA error: an illegal memory access was encountered"]
    assert findings_of_both_readers("\n".join(startup))[0].category == "unclassified"


def test_an_answer_printed_as_a_python_object_is_read_and_a_repeated_line_is_a_loop() -> None:
    """vllm-project/vllm#17344 (dev7 incoherent_output 013, 0.8.5): the answer is inside openai's printed object
    (`ChatCompletionMessage(content='1 + 1 等\\n📐\\n⚗\\n⚗...`): one glyph, line after line. The answer is read from
    the repr field (content=' / text='), and an answer whose lines are one line over and over is a loop, whatever
    the line holds; a list of distinct lines is not."""
    path = DEV7 / "incoherent_output/013_v085_qwen25vl_72b_awq_torch_compile_alembic_loop.log"
    [finding] = found(path)
    assert finding.category == "incoherent_output" and "the same" in finding.fix
    assert looping("\\n".join(["| 1 | 2 |"] * 14)) is not None
    groceries = ["apples", "bread", "milk", "eggs", "rice", "tea", "salt", "oil", "pasta", "beans", "jam", "soap",
                 "honey", "flour"]
    assert looping("\\n".join(groceries)) is None
    outputs = "[CompletionOutput(index=0, text='" + "\\n".join(["---"] * 20) + "', token_ids=[])]"
    assert findings_of_both_readers(outputs)[0].category == "incoherent_output"


def test_v1s_kv_cache_figures_against_max_model_len() -> None:
    """vllm-project/vllm#39734 (dev7 max_len_exceeds_kv 009): "Using max model len 262144" and "GPU KV cache size:
    76,640 tokens": one request of max_model_len cannot fit, and it blocks the queue. V1's figures (the cache's
    tokens, or a maximum concurrency under 1x for max_model_len) are checked as V0's "# GPU blocks" were; a
    concurrency of 0x is no blocks at all, not a max_model_len too long."""
    path = DEV7 / "max_len_exceeds_kv/009_gemma4_31b_tp2_kv_76k_tokens_max_len_262k_waiting_request_never_runs.log"
    assert categories(path)[0] == "max_len_exceeds_kv"
    under = ["(EngineCore_DP0 pid=1) INFO 10-22 09:33:49 [kv_cache_utils.py:1091] Maximum concurrency for "
             "131,072 tokens per request: 0.62x"]
    assert findings_of_both_readers("\n".join(under))[0].category == "max_len_exceeds_kv"
    fits = ["INFO 10-22 09:33:49 [model.py:1554] Using max model len 16000",
            "INFO 10-22 09:33:49 [kv_cache_utils.py:1087] GPU KV cache size: 162,704 tokens",
            "INFO 10-22 09:33:49 [kv_cache_utils.py:1091] Maximum concurrency for 16,000 tokens per request: 10.17x"]
    assert findings_of_both_readers("\n".join(fits)) == []


def test_the_words_of_other_layers_for_known_causes() -> None:
    """Known causes in the words of the layer that reported them. vllm-project/vllm#5635 (dev7 019): the NVIDIA
    container runtime refuses an image whose CUDA is newer than the host driver ("unsatisfied condition: cuda>=12.4");
    vllm-project/vllm#3719 (029): huggingface_hub's OfflineModeIsEnabled, the model not resolvable offline;
    gpustack/gpustack#4895 (002): the newer validation's "max_tokens=131072cannot be greater than
    max_model_len=max_total_tokens=8192"; gpustack/gpustack#1479 (031): a gateway's JSON error body with status 401;
    lobehub/lobehub#10728 (012): the browser's NS_ERROR_NET_PARTIAL_TRANSFER for a stream cut mid-transfer."""
    cases = {"cuda_driver_mismatch/019_docker_v050_image_cuda124_host_driver_530_v100_nvidia_container_cli.log":
             "cuda_driver_mismatch",
             "model_not_found/029_v03x_api_server_hf_hub_offline_codellama_awq_offline_mode_is_enabled.log":
             "model_not_found",
             "request_too_long/002_gpustack_v21_qwen35_mtp_max_tokens_131072_over_8192.log": "request_too_long",
             "auth/031_gpustack_api_key_curl_vllm_model_401_invalid_authentication_credentials.log": "auth",
             "stream_interrupted/012_lobehub_vllm_provider_stream_ns_error_net_partial_transfer_behind_nginx.log":
             "stream_interrupted"}
    for name, category in cases.items():
        assert categories(DEV7 / name)[0] == category, name
    assert findings_of_both_readers('{"code":404,"reason":"Not Found"}')[0].category == "unclassified"


def test_a_client_that_could_not_connect_is_said_so() -> None:
    """FoundationAgents/OpenManus#770 (dev7 client_config 003): "OpenAI API error: Connection error." line after
    line, and a base_url without `://`. A client library's connect failure means the request never reached a
    server: a warning that points at the base URL (the vocabulary has no client-configuration cause: unclassified);
    beside a server's own failure it comes after it."""
    path = DEV7 / "client_config/003_openmanus_qwen25vl_awq_base_url_missing_colon_connection_error.log"
    [finding] = found(path)
    assert (finding.category, finding.severity) == ("unclassified", "warning") and "://" in finding.fix
    beside = ["ERROR 02-25 11:11:34 launcher.py:101] MQLLMEngine is already dead, terminating server process",
              "openai.APIConnectionError: Connection error."]
    assert findings_of_both_readers("\n".join(beside))[0].category == "engine_dead"
