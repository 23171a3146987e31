"""The classifier's rules written from corpus/dev20 (scored fresh first: 11 of 13 named right before any rule, with the
dev19 rules; gathered for the thinnest categories), each test citing its log and the public thread it came from.
None of these logs is in the frozen test half (tests/logcorpus.py), which no test reads. Every text is read by both
of troubleshoot's readers, which must agree."""

from __future__ import annotations

from tests.logcorpus import LOGS
from tests.logreaders import findings_of_both_readers, found

DEV20 = LOGS / "corpus" / "dev20"


def named(lines: list[str]) -> list[tuple[str, str]]:
    return [(f.category, f.severity) for f in findings_of_both_readers("\n".join(lines))]


def test_vllms_free_memory_check_quoted_without_its_figures() -> None:
    """verl-project/verl#4229 (dev20 insufficient_free_memory 007): verl's rollout worker held the FSDP copy on the
    GPU; the title quotes vLLM's check without its numbers ("Free memory on device on startup is less than desired
    GPU memory utilization (0.8)"). It was silent: the rule wanted the (free/total GiB) figures."""
    [finding] = found(DEV20 / "insufficient_free_memory" / "007_verl_fully_async_rollout_fsdp_copy_holds_gpu.log")
    assert finding.category == "insufficient_free_memory" and "nvidia-smi" in finding.fix
    with_figures = ("ValueError: Free memory on device (10.5/23.6 GiB) on startup is less than desired GPU memory "
                    "utilization (0.9, 21.24 GiB).")
    [first, *_] = findings_of_both_readers(with_figures)
    assert first.category == "insufficient_free_memory" and "gpu_memory_utilization" in first.fix


def test_a_first_token_time_given_in_seconds_is_the_reporters_slow_answer() -> None:
    """vllm-project/vllm#10140 (dev20 high_latency 008): "The first frame response time after hitting the cache is
    2-5 seconds" (80,000-token prompts, --enforce-eager). It was silent: the words for a long TTFT wanted "high" or
    "long". A time under a second, or a number that is no time, is no report."""
    [finding] = found(DEV20 / "high_latency" / "008_v06x_qwen25_14b_awq_80k_prefix_ttft_2_5s_enforce_eager.log")
    assert (finding.category, finding.severity) == ("high_latency", "warning")
    for said in ("Our TTFT is 3 seconds under load.", "time to first token: 12.5 s with 32 users",
                 "The first token latency was about 4 secs."):
        assert named([said]) == [("high_latency", "warning")], said
    for calm in ("TTFT is 0.3 seconds.", "TTFT is 300 ms.", "first token of 3 tokens"):
        assert named([calm]) == [], calm


def test_out_of_memory_in_the_words_of_each_runtime() -> None:
    """Not from a log: the error names CUDA's driver and runtime APIs, NCCL, cuDNN, cuSPARSE and Ascend's runtime
    give a failed GPU allocation. Each, while serving, is the GPU running out of memory."""
    serving = 'INFO:     127.0.0.1:5000 - "POST /v1/chat/completions HTTP/1.1" 200 OK'
    for said in ("RuntimeError: CUDA driver error: CUDA_ERROR_OUT_OF_MEMORY",
                 "cupy.cuda.runtime.CUDARuntimeError: cudaErrorMemoryAllocation: out of memory",
                 "node1:123:456 [0] NCCL WARN Cuda failure 2 'out of memory'",
                 "RuntimeError: cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
                 "RuntimeError: NPU function error: aclrtMalloc, error code is 207001 ACL_ERROR_RT_MEMORY_ALLOCATION"):
        assert named([serving, said])[0] == ("runtime_oom", "error"), said


def test_a_clients_timeout_and_cut_in_the_words_of_other_clients() -> None:
    """Not from a log: aiohttp's, Python's socket and ssl, curl's, Node's and Go's words for a read that timed out and
    for a body cut short are the same two causes as httpx's and openai's."""
    for said in ("aiohttp.client_exceptions.ServerTimeoutError: Timeout on reading data from socket",
                 "socket.timeout: timed out", "TimeoutError: The read operation timed out",
                 "curl: (28) Operation timed out after 60001 milliseconds with 1234 bytes received",
                 "TypeError: fetch failed ... code: 'UND_ERR_HEADERS_TIMEOUT'",
                 'Post "http://vllm:8000/v1/chat/completions": context deadline exceeded (Client.Timeout exceeded '
                 "while awaiting headers)"):
        assert named([said])[0][0] == "client_timeout", said
    for said in ("curl: (18) transfer closed with outstanding read data remaining",
                 "curl: (92) HTTP/2 stream 1 was not closed cleanly: INTERNAL_ERROR (err 2)",
                 "Error [ERR_STREAM_PREMATURE_CLOSE]: Premature close", "SocketError: other side closed "
                 "code: 'UND_ERR_SOCKET'"):
        assert named([said])[0][0] == "stream_interrupted", said
