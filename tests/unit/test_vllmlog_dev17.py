"""The classifier's rules written from corpus/dev17 (scored fresh first: 7 of 18 named right before any rule; a batch
gathered for the categories dev16 lacked), each test citing its log and the public thread it came from. None of these
logs is in the frozen test half (tests/logcorpus.py), which no test reads. The rules read traceback frames as a
notebook prints them and the start-up phase a log reached, never one log's sentence. Every text is read by both of
troubleshoot's readers, which must agree."""

from __future__ import annotations

from tests.logcorpus import LOGS
from tests.logreaders import findings_of_both_readers, found

DEV17 = LOGS / "corpus" / "dev17"


def named(lines: list[str]) -> list[tuple[str, str]]:
    return [(f.category, f.severity) for f in findings_of_both_readers("\n".join(lines))]


def test_a_notebooks_frames_are_frames() -> None:
    """QwenLM/Qwen3#458 (dev17 insufficient_free_memory 003): Qwen1.5-32B-GPTQ from Jupyter, whose traceback prints
    `File [path/cache_engine.py:64](http://host/lab/tree/...#line=63), in CacheEngine._allocate_kv_cache(self, ...)`
    and ends in "OutOfMemoryError: CUDA out of memory"; two processes shared the GPU. Read as frames (the link and
    the class dropped), the OOM is where the KV cache is allocated after the profile: memory taken since. It was
    `runtime_oom` (the title's words, nothing placed)."""
    [first, *_] = found(DEV17 / "insufficient_free_memory" / "003_qwen15_32b_gptq_kv_alloc_oom_gpu_shared_by_two_"
                        "processes.log")
    assert first.category == "insufficient_free_memory"
    oom = "OutOfMemoryError: CUDA out of memory. Tried to allocate 642.00 MiB."
    for frame in ("File [~/env/lib/python3.11/site-packages/vllm/worker/cache_engine.py:64](http://1.2.3.4:8888/lab/"
                  "tree/cache_engine.py#line=63), in CacheEngine._allocate_kv_cache(self, num_blocks, device)",
                  "File ~/env/lib/python3.11/site-packages/vllm/worker/cache_engine.py:64, in "
                  "CacheEngine._allocate_kv_cache(self, num_blocks, device)"):
        assert named([frame, oom])[0] == ("insufficient_free_memory", "error"), frame


def test_a_cut_traceback_with_no_step_in_its_frames_is_placed_by_the_phase_the_log_reached() -> None:
    """vllm-project/vllm#5847 (dev17 profile_oom 006): Llama-3-8B with a 1M-token default context; "Loading model
    weights took 15.2075 GB", then a traceback cut in `_init_engine` (only the outer frames). The log reached the
    memory profile, which runs next: its failure is the common cause there. It was `unclassified`. A capture phase
    is not used so (a server that captured its graphs serves next, and excerpts lack the line that says so)."""
    [finding] = found(DEV17 / "profile_oom" / "006_v05_llama3_8b_gradient_1048k_default_context_oom_after_weights.log")
    assert finding.category == "profile_oom"
    cut = ["Traceback (most recent call last):",
           '  File "/usr/lib/python3/vllm/engine/async_llm_engine.py", line 490, in _init_engine',
           "    return engine_class(*args, **kwargs)"]
    loaded = "INFO 06-26 07:48:15 model_runner.py:160] Loading model weights took 15.2075 GB"
    assert named([loaded, *cut])[0] == ("profile_oom", "error")
    assert named(cut)[0] == ("unclassified", "error")  # no phase reached: nothing to place it by
    client = ["Traceback (most recent call last):",
              '  File "/usr/lib/python3/site-packages/openai/_base_client.py", line 990, in request',
              "    return self._request(cast_to, options)"]
    assert named([loaded, *client])[0][0] != "profile_oom"  # a client's frames are no server's start-up
    captured = "INFO 06-26 07:49:15 model_runner.py:1000] Graph capturing finished in 9 secs."
    assert named([loaded, captured, *cut])[0] == ("unclassified", "error")


def test_vllms_profiling_warning_places_an_oom_in_the_profile() -> None:
    """vllm-project/vllm#17250 (dev17 profile_oom 007): 0.8.4, a multimodal model; vLLM's "The sequence length used
    for profiling (...) is too short to hold the multi-modal embeddings" (printed inside the memory profile), then
    "CUDA out of memory" with no frame that places it. It was `runtime_oom`."""
    [first, *_] = found(DEV17 / "profile_oom" / "007_v084_multimodal_profiling_warning_then_cuda_oom_16gb.log")
    assert first.category == "profile_oom"
    warning = ("WARNING 04-27 16:27:59 [profiling.py:245] The sequence length used for profiling "
               "(max_num_batched_tokens / max_num_seqs = 20000) is too short to hold the multi-modal embeddings")
    oom = "ERROR 04-27 16:28:02 [engine.py:448] CUDA out of memory. Tried to allocate 800.00 MiB."
    assert named([warning, oom])[0] == ("profile_oom", "error")
