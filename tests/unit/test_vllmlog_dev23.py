"""The classifier's rules written from corpus/dev23 (scored fresh first: 10 of 17 named right before any rule, with the
rules of the round before; 17 threads outside vllm-project/vllm: RL trainers, Qwen's and GLM's repositories, ascend),
each test citing its log and the public thread it came from. None of these logs is in the frozen test half
(tests/logcorpus.py), which no test reads. Every text is read by both of troubleshoot's readers, which must agree."""

from __future__ import annotations

from tests.logcorpus import LOGS
from tests.logreaders import findings_of_both_readers, found, named

DEV23 = LOGS / "corpus" / "dev23"


def test_an_oom_waking_from_sleep_mode_is_memory_another_process_took() -> None:
    """TideDra/lmm-r1#43 and verl-project/verl#302 (dev23 insufficient_free_memory 001, 007): vLLM's sleep mode in an
    RL trainer; `wake_up` maps its memory back (the cumem allocator) while the trainer still holds the GPU: "CUDA
    Error: out of memory at .../cumem_allocator.cpp:62". Both were `unclassified` (that capital E was no OOM word,
    and `wake_up` no phase)."""
    for name in ("001_lmmr1_vllm_wake_up_cumem_oom.log", "007_verl_vllm07_wake_up_cumem_oom_after_rollout.log"):
        [first, *_] = found(DEV23 / "insufficient_free_memory" / name)
        assert first.category == "insufficient_free_memory" and "wake_up" in first.fix, name
    raised = ["Traceback (most recent call last):",
              '  File "/usr/lib/python3/site-packages/vllm/v1/worker/gpu_worker.py", line 120, in wake_up',
              "    allocator.wake_up(tags)",
              "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB"]
    assert named(raised)[0] == ("insufficient_free_memory", "error")


def test_the_length_refusal_without_of() -> None:
    """QwenLM/Qwen3-VL#946 (dev23 request_too_long 004): "Prompt length of 16601 is longer than the maximum model
    length 10000." (no "of" before the limit, as some versions word it). It was silent."""
    [finding] = found(DEV23 / "request_too_long" / "004_qwen25vl_max_pixels_in_message_prompt_too_long.log")
    assert finding.category == "request_too_long" and "10000" in finding.fix


def test_oom_said_next_to_chinese_words_places_a_cut_kv_allocation() -> None:
    """zai-org/GLM-4#121 (dev23 insufficient_free_memory 009): the title "运行openai_api_server 报oom" and a V0
    traceback cut in `_init_cache_engine`. Without the reported OOM a cut there is the size check (max_len_exceeds_kv,
    as it was named); "报oom" was not read as OOM because a CJK character is a word character for `\\b`."""
    [first, *_] = found(DEV23 / "insufficient_free_memory" / "009_glm4_openai_api_server_oom_init_cache_engine.log")
    assert first.category == "insufficient_free_memory"
    for said in ("# title: 运行 server 报oom", "# title: 启动时OOM了", "# title: vllm oom on start"):
        cut = [said, "Traceback (most recent call last):",
               '  File "/x/vllm/worker/worker.py", line 194, in initialize_cache', "    self._init_cache_engine()"]
        assert named(cut)[0] == ("insufficient_free_memory", "error"), said
    for not_said in ("# title: the room is cold", "# title: zoom out"):
        cut = [not_said, "Traceback (most recent call last):",
               '  File "/x/vllm/worker/worker.py", line 194, in initialize_cache', "    self._init_cache_engine()"]
        assert named(cut)[0][0] != "insufficient_free_memory", not_said


def test_a_collective_peer_silent_for_the_whole_timeout_is_a_stall() -> None:
    """huggingface/open-r1#690 (dev23 engine_stalled 012): GRPO's weight sync into a vLLM server; torch's c10d
    transport: "[c10d] waitForInput: socket ... timed out after 300000ms", then "Invocation of collective_rpc method
    failed". It was `unclassified`. The c10d TCPStore warnings of a healthy start (corpus/dev11 healthy 023) stay
    quiet."""
    [first, *_] = found(DEV23 / "engine_stalled" / "012_msswift_grpo_vllm_weight_sync_c10d_timeout.log")
    assert first.category == "engine_stalled"
    healthy = found(LOGS / "corpus" / "dev11" / "healthy"
                    / "023_v091dev_offline_llm_generate_tokenizers_fork_tcpstore_warnings_expected.log")
    assert not [f for f in healthy if f.severity == "error"]


def test_out_of_memory_in_the_words_of_more_runtimes_and_of_the_host() -> None:
    """Not from a log: Triton's launcher, Apple's MPS, Intel's Unified Runtime, XLA on TPU and old torch's bare words
    for a failed device allocation are the GPU running out of memory while serving; torch's CPU allocator, C++'s
    bad_alloc and Python's MemoryError are the host's RAM, named so, with a fix about RAM and not the GPU."""
    serving = 'INFO:     127.0.0.1:5000 - "POST /v1/chat/completions HTTP/1.1" 200 OK'
    for said in ("RuntimeError: Triton Error [CUDA]: out of memory",
                 "RuntimeError: MPS backend out of memory (MPS allocated: 9.00 GB)",
                 "RuntimeError: UR_RESULT_ERROR_OUT_OF_DEVICE_MEMORY",
                 "jaxlib.xla_extension.XlaRuntimeError: RESOURCE_EXHAUSTED: Error allocating device buffer: 1.00G",
                 "RuntimeError: out of memory"):
        [first, *_] = findings_of_both_readers(f"{serving}\n{said}")
        assert (first.category, first.severity) == ("runtime_oom", "error") and "RAM" not in first.title, said
    for said in ("RuntimeError: [enforce fail at alloc_cpu.cpp:114] data. DefaultCPUAllocator: not enough memory: "
                 "you tried to allocate 1073741824 bytes.", "MemoryError",
                 "terminate called after throwing an instance of 'std::bad_alloc'"):
        [first, *_] = findings_of_both_readers(f"{serving}\n{said}")
        assert first.category == "runtime_oom" and "RAM" in first.title and "RAM" in first.fix, said
    assert named([serving, "CudaMemoryErrorHandler registered"]) == []


def test_more_wordings_of_causes_the_vocabulary_has() -> None:
    """Not from a log: wordings probed against the vocabulary, each a cause already named in other words. Docker's
    refusal to publish a port something holds; vLLM's config reader given a directory without config.json; requests'
    401 for a server's URL (a hub's is the model's access); torch finding no GPU at all."""
    for said, category in (
            ("docker: Error response from daemon: driver failed programming external connectivity on endpoint vllm: "
             "Bind for 0.0.0.0:8000 failed: port is already allocated.", "port_in_use"),
            ("Error starting userland proxy: listen tcp4 0.0.0.0:8000: bind: address already in use", "port_in_use"),
            ("ValueError: No supported config format found in /models/qwen", "model_not_found"),
            ("requests.exceptions.HTTPError: 401 Client Error: Unauthorized for url: http://localhost:8000/v1/completions",
             "auth"),
            ("requests.exceptions.HTTPError: 401 Client Error: Unauthorized for url: "
             "https://huggingface.co/api/models/meta-llama/Llama-3.1-8B", "model_not_found"),
            ("RuntimeError: No CUDA GPUs are available", "cuda_driver_mismatch"),
            ("RuntimeError: Failed to infer device type", "cuda_driver_mismatch")):
        assert named([said])[0] == (category, "error"), said


def test_timeouts_and_cuts_in_the_words_of_nginx_java_and_node() -> None:
    """Not from a log: nginx's own log lines (the proxy's read timeout; the server closing mid-body), Java's OkHttp,
    Node's request/net and urllib3's chunk reader say the same two causes as Python's clients; connect's own timeout
    is a connection never made, not an answer's timeout."""
    for said in ("java.net.SocketTimeoutException: timeout", "Error: ESOCKETTIMEDOUT", "Error: read ETIMEDOUT",
                 "2024/06/22 20:16:34 [error] 29#29: *1 upstream timed out (110: Connection timed out) while reading "
                 "response header from upstream, client: 10.0.0.5, upstream: \"http://10.0.0.9:8000/v1/chat/completions\""):
        assert named([said])[0] == ("client_timeout", "error"), said
    for said in ("urllib3.exceptions.ProtocolError: ('Connection broken: InvalidChunkLength(got length b'', 0 bytes "
                 "read)', InvalidChunkLength(got length b'', 0 bytes read))",
                 "java.io.IOException: unexpected end of stream on http://localhost:8000/...",
                 "2024/06/22 20:16:34 [error] 29#29: *1 upstream prematurely closed connection while reading upstream"):
        assert named([said])[0] == ("stream_interrupted", "error"), said
    for said in ("httpx.ConnectTimeout: timed out", "TimeoutError: [Errno 110] Connection timed out"):
        assert named([said])[0] == ("unclassified", "warning"), said


def test_slow_answers_in_the_reporters_many_words() -> None:
    """Not from a log (corpus/dev17 high_latency 014, "推理速度极慢" and "非常非常慢", was silent): a reporter's
    words for slow answers beyond "slow": latency called high, throughput or speed called low, a small rate, an
    answer that takes long, in English and Chinese. Wanting low latency, or denying it, is no report."""
    for said in ("The generation speed is only 5 tokens/s on A100.", "High latency when serving Qwen3 with 16 users.",
                 "Latency is very high (30s per request).", "The throughput is very low compared to HF TGI.",
                 "Each request takes 40 seconds to respond.", "It takes forever to generate a response.",
                 "Decoding speed drops to 1.5 tokens per second", "推理速度只有5 token/s", "响应时间很长",
                 "推理速度极慢"):
        assert named([said]) == [("high_latency", "warning")], said
    for calm in ("We need low latency and high throughput for our app.", "Latency is not high.",
                 "The latency was 20 ms.", "Only 2 requests are running", "慢慢来"):
        assert named([calm]) == [], calm
    [first, *_] = found(LOGS / "corpus" / "dev17" / "high_latency"
                        / "014_deepseek_v3_tp8_pp2_two_nodes_ray_3_tokens_per_s.log")
    assert first.category == "high_latency"


def test_garbled_answers_in_the_reporters_many_words() -> None:
    """Not from a log: a reporter's words for answers that are no answer, beyond "garbled" and "gibberish": what they
    are called, an answer that loops, quality said to drop; in Chinese, answers that repeat or are a mess. A retry
    or a request sent again and again is no report."""
    for said in ("The model outputs only exclamation marks", "The response is meaningless and keeps repeating.",
                 "The model keeps generating the same words over and over.", "Output is incoherent after a few tokens.",
                 "The output is garbage.", "Answers are unreadable / corrupted text",
                 "The model outputs weird characters",
                 "输出全是感叹号", "回答不停重复同一句话", "输出内容混乱", "accuracy drop on gsm8k from 0.8 to 0.2"):
        assert named([said]) == [("incoherent_output", "warning")], said
    for calm in ("I retried over and over.", "the same request again and again", "A slow request is stuck"):
        assert named([calm])[:1] != [("incoherent_output", "warning")], calm


def test_a_server_that_stops_answering_and_an_oom_after_hours_in_the_reporters_words() -> None:
    """Not from a log: more of a reporter's words for a server that stops answering (engine_stalled, a warning),
    and "after running for hours" as the step an OOM happened at (serving)."""
    for said in ("The server stops responding after a few requests.", "No response from the server after 10 min.",
                 "The request gets no response", "服务没有反应", "请求一直没有返回"):
        assert named([said]) == [("engine_stalled", "warning")], said
    for calm in ("I got no answer from the maintainers", "No reply from the team", "No response needed."):
        assert named([calm]) == [], calm
    assert named(["got OOM after running for several hours"])[0] == ("runtime_oom", "error")


def test_configuration_refusals_in_newer_and_other_words() -> None:
    """Not from a log: vLLM's configuration checks in words the rules lacked (a quantization the checkpoint does not
    have or vLLM does not know, the scheduler's sizes in backticks or against max_num_seqs, CUDA initialised before
    the workers forked), and a LoRA directory without its adapter_config.json."""
    for said, category in (
            ("ValueError: Unknown quantization method: awq_marlin. Must be one of ['aqlm', 'awq'].", "invalid_config"),
            ("ValueError: Quantization method specified in the model config (gptq) does not match the quantization "
             "method specified in the `quantization` argument (awq).", "invalid_config"),
            ("ValueError: `max_num_batched_tokens` (2048) is smaller than `max_model_len` (8192).", "invalid_config"),
            ("ValueError: max_num_batched_tokens (2048) must be greater than or equal to max_num_seqs (4096).",
             "invalid_config"),
            ("RuntimeError: Cannot re-initialize CUDA in forked subprocess. To use CUDA with multiprocessing, you "
             "must use the 'spawn' start method", "invalid_config"),
            ("ValueError: Cannot find any of ['adapter_config.json'] in /loras/x", "model_not_found")):
        assert named([said])[0] == (category, "error"), said
    [finding] = findings_of_both_readers("ValueError: `max_num_batched_tokens` (2048) is smaller than "
                                         "`max_model_len` (8192).")
    assert "8192" in finding.fix


def test_a_half_installed_driver_and_a_media_download_refused() -> None:
    """Not from a log: NVML's "Driver/library version mismatch" (a driver upgraded without a reboot, also through
    the container toolkit) and CUDA's "system not yet initialized" (Fabric Manager) are the driver; a 403 while vLLM
    fetched a request's image is the download, not the server's key."""
    for said in ("nvidia-container-cli: initialization error: nvml error: driver/library version mismatch",
                 "Failed to initialize NVML: Driver/library version mismatch",
                 "RuntimeError: CUDA error: system not yet initialized"):
        assert named([said])[0] == ("cuda_driver_mismatch", "error"), said
    assert named(["ValueError: Failed to fetch image from https://x/y.png: 403 Forbidden"])[0] == \
        ("media_fetch_error", "error")
