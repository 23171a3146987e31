"""The classifier's rules written from corpus/dev10, each test citing its log and the public thread it came from.
None of these logs is in the frozen test half (tests/logcorpus.py), which no test reads. The rules read the
reporter's own words where the log names nothing (a KV cache called full with requests waiting, a time to first
token called high or long, a denied "not slow"), and one structure (an OOM nothing places, in a log whose last
phase is the engine's configuration, happened while the weights loaded), never one log's sentence. Every text is
read by both of troubleshoot's readers, which must agree."""

from __future__ import annotations

from tests.logcorpus import LOGS
from tests.logreaders import findings_of_both_readers, found

DEV10 = LOGS / "corpus" / "dev10"


def categories_of(lines: list[str]) -> list[str]:
    return [f.category for f in findings_of_both_readers("\n".join(lines))]


def test_a_kv_cache_the_reporter_calls_full_with_requests_waiting_is_kv_cache_full() -> None:
    """vllm-project/vllm#23444 (dev10 kv_cache_full 001, 0.10.1.1): "Hitting close to 100% cache causes spike in
    waiting and kills throughput" over collect_env output; stackbytes.beehiiv.com's "Why your GPU is idle but your
    requests are queued" (dev10 002): "The GPU is not slow. Requests are waiting to get in." and "Why KV cache is the
    actual bottleneck" on one logical line. The KV cache called full, exhausted, filling up or the bottleneck (or a
    95-100 % cache) with requests said to wait, queue or pile up, on one line, is kv_cache_full as a warning where the
    log names nothing; a "not slow" is no report of slowness."""
    for path in ("kv_cache_full/001_v01011_8gpu_close_to_100pct_cache_spike_in_waiting_title_env.log",
                 "kv_cache_full/002_rtx4090_qwen25_7b_long_outputs_ttft_144s_requests_wait_for_kv_blog.log"):
        [finding] = found(DEV10 / path)
        assert finding.category == "kv_cache_full" and finding.severity == "warning", path
    # vllm-project/vllm-ascend#5859 (dev6 kv_cache_full 015, Ascend 0.11.0rc2): "KV cache usage接近100%时" (close to
    # 100%) with "排队waiting" (queueing) in the title: a percentage after a verb (close to, reaches, at) is the
    # reporter's, not vLLM's throughput line (which has a colon).
    dev6 = LOGS / "corpus" / "dev6" / "kv_cache_full"
    [finding] = found(dev6 / "015_ascend_a2_glm47_w8a8_32k_input_kvc_98_9_tpot_4x_waiting.log")
    assert finding.category == "kv_cache_full" and finding.severity == "warning"
    for said in ("the KV cache is full and 30 requests are queued", "KV cache fills up, requests pile up in the queue",
                 "at 99% KV cache the requests keep waiting", "KV cache占满了 请求都在排队",
                 "the KV cache at 99% and requests queue", "KV cache usage reaches 100% with requests pending"):
        assert categories_of(["I serve Qwen with vllm serve.", said]) == ["kv_cache_full"], said
    for other in ("the KV cache is full but no requests are waiting", "the KV cache is full",
                  "requests are waiting", "GPU KV cache usage: 99.0% while requests wait",
                  "kv cache 使用率从100%掉到0%,running 队列请求全部变成waiting",
                  "the GPU is not slow"):
        assert categories_of(["I serve Qwen with vllm serve.", other]) == [], other
    # vLLM's own throughput lines are figures, never words: Waiting: 0 at 99.3 % is no full cache (dev10 healthy
    # 003, discuss.vllm.ai/t/1863), and the full cache with requests waiting is named by the figures.
    assert categories_of(["[loggers.py:123] Engine 000: Avg prompt throughput: 800.0 tokens/s, Avg generation "
                          "throughput: 255.0 tokens/s, Running: 1 reqs, Waiting: 0 reqs, GPU KV cache usage: 99.3%, "
                          "Prefix cache hit rate: 93.1%"]) == []
    assert not any(f.severity == "error" for f in found(
        DEV10 / "healthy/003_v1_discuss_kv_cache_usage_rising_to_99pct_waiting_0_expected.log"))


def test_a_time_to_first_token_the_reporter_calls_high_or_long_is_high_latency() -> None:
    """gpustack/gpustack#4969 (dev10 high_latency 017): "High TTFT is observed in the first request after deploying";
    vllm-project/vllm#16858 (dev10 018): "the TTFT is very long" over a benchmark result; vllm-project/vllm#21495
    (dev10 025): "causing a very high TTFT for the short requests". A TTFT (or time to first token) called high,
    long or slow, before or after its name, is the reporter's word for slow answers: high_latency as a warning where
    the log names nothing; a benchmark's TTFT rows and a TTFT said to be low are not."""
    for path in ("high_latency/017_gpustack_v0171_qwen35_08b_rtx4080_high_ttft_first_request_prose.log",
                 "high_latency/018_v083_benchmark_serving_first_run_ttft_long_second_run_better.log",
                 "high_latency/025_v1_short_requests_high_ttft_behind_128k_long_context_prefill_prose.log"):
        [finding] = found(DEV10 / path)
        assert finding.category == "high_latency" and finding.severity == "warning", path
    for said in ("We see a high TTFT under load.", "time to first token is too long", "abnormal TTFT (too long)",
                 "long time-to-first-token on every request"):
        assert categories_of(["Serving Llama on one GPU.", said]) == ["high_latency"], said
    for other in ("Mean TTFT (ms):                          361.76", "TTFT stays low at 40 ms",
                  "time to first token: 0.2 s", "The GPU is not slow at all."):
        assert categories_of(["Serving Llama on one GPU.", other]) == [], other


def test_an_oom_no_line_places_in_a_log_that_reached_only_the_engine_configuration_is_a_weights_oom() -> None:
    """vllm-project/vllm#11560 (dev10 weights_oom 012, 0.6.4): the title "torch.OutOfMemoryError: CUDA out of
    memory." over the engine's config line (Qwen2-VL-72B, bfloat16, tensor_parallel_size=1) and nothing later. The
    engine was configured and reached no later phase: the next step that allocates is the weights' load, so an OOM
    nothing else places happened there (as one in a log shown from its launch does). A later phase line, or serving,
    places it there instead."""
    [finding] = found(DEV10 / "weights_oom/012_v064_qwen2vl_72b_bf16_tp1_single_gpu_oom_at_load_title.log")
    assert finding.category == "weights_oom" and finding.severity == "error"
    title = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB."
    configured = "INFO 12-27 08:52:17 llm_engine.py:249] Initializing an LLM engine (v0.6.4) with config: model='m'"
    assert categories_of([title, configured])[0] == "weights_oom"
    assert categories_of([title, configured, "INFO 12-27 08:53:00 worker.py:241] Memory profiling takes 4.2 "
                          "seconds"])[0] == "profile_oom"
    assert categories_of([title])[0] == "runtime_oom"  # nothing places it: the GPU ran out of memory
