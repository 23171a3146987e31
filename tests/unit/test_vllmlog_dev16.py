"""The classifier's rules written from corpus/dev16 (scored fresh first: 16 of 19 named right before any rule), each
test citing its log and the public thread it came from. None of these logs is in the frozen test half
(tests/logcorpus.py), which no test reads. The rules read traceback frames (what the program was doing when it
failed), never one log's sentence. Every text is read by both of troubleshoot's readers, which must agree."""

from __future__ import annotations

from tests.logcorpus import LOGS
from tests.logreaders import findings_of_both_readers, found

DEV16 = LOGS / "corpus" / "dev16"


def named(lines: list[str]) -> list[tuple[str, str]]:
    return [(f.category, f.severity) for f in findings_of_both_readers("\n".join(lines))]


def test_a_wrappers_own_argument_parser_refusing_a_flag_is_a_bad_flag() -> None:
    """modelscope/ms-swift#5249 (dev16 bad_flag 007): `swift infer --vllm_gpu_memory_utilization 0.5`, which that
    release's parser does not know; its `_parse_args` raises "ValueError: remaining_argv". A wrapper's own parser
    (a leading underscore, transformers' `parse_args_into_dataclasses`) is the command line's fault as vLLM's is. It
    was `unclassified`."""
    [finding] = found(DEV16 / "bad_flag" / "007_ms_swift_351_infer_vllm_gpu_memory_utilization_remaining_argv.log")
    assert finding.category == "invalid_argument" and finding.severity == "error"
    for frame in ("_parse_args", "parse_args_into_dataclasses"):
        assert named(["Traceback (most recent call last):",
                      f'  File "/opt/app/cli.py", line 40, in {frame}',
                      "ValueError: Some specified arguments are not used by the parser: ['--bogus']"]) == \
            [("invalid_argument", "error")], frame


def test_an_out_of_memory_error_gathering_logprobs_is_a_requests() -> None:
    """EleutherAI/lm-evaluation-harness#2779 (dev16 runtime_oom 009): lm_eval's leaderboard tasks on Qwen2.5-72B;
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 7.04 GiB" under the sampler's `get_logprobs`,
    with no start-up line in the paste. The dummy runs of the start-up ask for no logprobs, so a failure gathering
    them is a request's, in service. It was `profile_oom` (the sampler at start-up)."""
    [finding] = found(DEV16 / "runtime_oom" / "009_lm_eval_leaderboard_qwen25_72b_tp8_sampler_logprobs_oom.log")
    assert finding.category == "runtime_oom"
    oom = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 7.04 GiB."
    for frame, want in (("get_logprobs", "runtime_oom"), ("compute_logprobs", "runtime_oom"),
                        ("_get_prompt_logprob_if_needed", "runtime_oom"), ("_apply_top_k_top_p", "profile_oom")):
        path = "vllm/model_executor/layers/sampler.py"
        assert named(["Traceback (most recent call last):", f'  File "/usr/lib/python3/{path}", line 9, in {frame}',
                      oom])[0] == (want, "error"), frame


def test_a_failure_allocating_the_kv_cache_after_the_profile_is_memory_taken_since() -> None:
    """huggingface/trl#3128 (dev16 insufficient_free_memory 017): GRPO under accelerate builds vLLM on a GPU the
    trainer uses; the traceback ends in V0's `_initialize_kv_caches` at `self.model_executor.initialize_cache(
    num_gpu_blocks, num_cpu_blocks)` (cut), titled "OOM when init self.vllm". The profile is over there: an OOM
    allocating the cache is memory free at the profile and taken since (the fix: lower gpu_memory_utilization,
    trl#2688). It was `profile_oom`."""
    [finding] = found(DEV16 / "insufficient_free_memory" / "017_trl_grpo_accelerate_vllm_init_kv_cache_oom_shared_"
                      "gpu.log")
    assert finding.category == "insufficient_free_memory" and "gpu_memory_utilization" in finding.fix
    engine = '  File "/usr/lib/python3/vllm/engine/llm_engine.py", line 429, in _initialize_kv_caches'
    call = "    self.model_executor.initialize_cache(num_gpu_blocks, num_cpu_blocks)"
    oom = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB."
    # the whole error: an OOM there is memory taken since the profile
    assert named(["Traceback (most recent call last):", engine, call, oom])[0] == ("insufficient_free_memory", "error")
    v1 = '  File "/usr/lib/python3/vllm/v1/worker/gpu_model_runner.py", line 2400, in _allocate_kv_cache_tensors'
    assert named(["Traceback (most recent call last):", v1, oom])[0] == ("insufficient_free_memory", "error")
    # cut with no word of memory: what fails after the profile is most often the cache's size check
    assert named(["Traceback (most recent call last):", engine, call])[0] == ("max_len_exceeds_kv", "error")


def test_a_frames_code_line_is_read_across_a_block_boundary_and_at_the_end() -> None:
    """The scanner reads 1 MiB blocks; a frame line that ended one block lost its code line (the next block's first,
    or a last line with no newline), so the scanner and the line-by-line reader named different causes (found while
    writing the test above: a paste ending at `initialize_cache(...)` with no newline)."""
    import io

    from qwenops.vllmlog.classify import CANDIDATE, SERVED
    from qwenops.vllmlog.lines import scan_log

    frame = b'  File "/x/vllm/engine/llm_engine.py", line 1, in _initialize_kv_caches\n'
    code = b"    self.model_executor.initialize_cache(num_gpu_blocks, num_cpu_blocks)\n"
    head = b"Traceback (most recent call last):\n"
    room = (1 << 20) - 10 - len(head) - len(frame)  # the code line straddles the first block's end
    filler = b"y" * 63 + b"\n"
    prefix = filler * (room // len(filler)) + b"z" * (room % len(filler) - 1) + b"\n"
    for text in (prefix + head + frame + code, head + frame + code.rstrip(b"\n")):
        scanned = scan_log(io.BytesIO(text), CANDIDATE, SERVED)
        [framed] = [line for line in scanned if "_initialize_kv_caches" in line.text]
        assert framed.code == code.decode().rstrip("\n")
