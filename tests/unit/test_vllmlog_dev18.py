"""The classifier's rules written from corpus/dev18 (scored fresh first: 10 of 16 named right before any rule, 11 with
one label corrected), each test citing its log and the public thread it came from. None of these logs is in the
frozen test half (tests/logcorpus.py), which no test reads. The rules read structure where there is some: a
traceback's frames (the engine's own step; Python's resource tracker), a client library's exception type, and the
words of the loader, NVML and vLLM's platform check. Every text is read by both of troubleshoot's readers, which must
agree."""

from __future__ import annotations

from tests.logcorpus import LOGS
from tests.logreaders import findings_of_both_readers, found

DEV18 = LOGS / "corpus" / "dev18"


def named(lines: list[str]) -> list[tuple[str, str]]:
    return [(f.category, f.severity) for f in findings_of_both_readers("\n".join(lines))]


def test_no_driver_in_the_container_is_named_with_the_runtime_fix() -> None:
    """kserve/kserve#4722 (dev18 cuda_driver_mismatch 001): vLLM in a KServe pod without the NVIDIA runtime class:
    "NVML Shared Library Not Found", "No platform detected", "libcuda.so.1: cannot open shared object file". It was
    `unclassified`; the fix is the runtime, not a newer driver."""
    [finding] = found(DEV18 / "cuda_driver_mismatch" / "001_kserve_hf_runtime_vllm_no_nvml_libcuda_missing.log")
    assert finding.category == "cuda_driver_mismatch" and "no NVIDIA driver" in finding.title
    assert "runtimeClassName: nvidia" in finding.fix and "--gpus all" in finding.fix
    for line in ("ImportError: libcuda.so.1: cannot open shared object file: No such file or directory",
                 "pynvml.NVMLError_LibraryNotFound: NVML Shared Library Not Found",
                 "INFO 05-01 10:00:00 [__init__.py:243] No platform detected, vLLM is running on UnspecifiedPlatform"):
        assert named([line])[0] == ("cuda_driver_mismatch", "error"), line
    too_old = named(["RuntimeError: The NVIDIA driver on your system is too old (found version 11040)."])
    assert too_old[0] == ("cuda_driver_mismatch", "error")


def test_a_ptx_from_a_newer_toolchain_is_the_driver() -> None:
    """Tencent-Hunyuan/HunyuanOCR#19 (dev18 cuda_driver_mismatch 005): a vLLM nightly on an H20, "CUDA error: the
    provided PTX was compiled with an unsupported toolchain" (kernels built by a CUDA newer than the driver); CUDA
    12.9 fixed it. It was `unclassified`."""
    [finding] = found(DEV18 / "cuda_driver_mismatch" / "005_hunyuanocr_vllm_nightly_h20_ptx_unsupported_toolchain.log")
    assert finding.category == "cuda_driver_mismatch" and "too old" in finding.title


def test_a_parallelism_the_architecture_lacks_is_the_configuration() -> None:
    """vllm-project/vllm#9015 (dev18 invalid_config 016): 0.6.2, Llama 3.2 90B Vision with pipeline_parallel_size=4:
    "NotImplementedError: Pipeline parallelism is only supported for the following architectures: [...]". It was
    `unclassified`."""
    [finding] = found(DEV18 / "invalid_config" / "016_v062_llama32_90b_vision_pp4_not_supported_arch.log")
    assert finding.category == "invalid_config"
    assert named(["NotImplementedError: Tensor parallelism is not yet supported for this model."])[0] == \
        ("invalid_config", "error")


def test_an_error_in_the_engines_step_is_the_engine_dying() -> None:
    """vllm-project/vllm#10432 (dev18 engine_dead 011): 0.6.4 with --num-scheduler-steps > 1 and max_tokens=0: each
    worker's `advance_step_flashattn` raised a RuntimeError and the engine died; the excerpt is cut to the workers'
    frames. It was `unclassified` "at start-up". An exception the engine's step raises is not caught there: the
    engine dies of it, whatever it is."""
    [finding] = found(DEV18 / "engine_dead" / "011_v064_multistep_scheduler_max_tokens_0_advance_step_crash.log")
    assert finding.category == "engine_dead" and "RuntimeError" in finding.title
    assert "multi-step scheduling" in finding.fix
    step = ["Traceback (most recent call last):",
            '  File "/opt/venv/lib/python3.12/site-packages/vllm/v1/engine/core.py", line 870, in run_busy_loop',
            "    self._process_engine_step()",
            '  File "/opt/venv/lib/python3.12/site-packages/vllm/v1/engine/core.py", line 895, in _process_engine_step',
            "    outputs, model_executed = self.step_fn()",
            "IndexError: index 4 is out of bounds for dimension 0 with size 4"]
    assert named(step)[0] == ("engine_dead", "error")
    elsewhere = ["Traceback (most recent call last):",
                 '  File "/opt/app/main.py", line 10, in main',
                 "    run()",
                 "IndexError: index 4 is out of bounds for dimension 0 with size 4"]
    assert named(elsewhere)[0] == ("unclassified", "error")  # no step in the frames: nothing says the engine died


def test_pythons_resource_tracker_complaining_is_no_error() -> None:
    """vllm-project/vllm#5468 (dev18 healthy 008): 0.5.0 with tensor parallelism on the multiprocessing backend prints
    three "KeyError: '/psm_...'" tracebacks from multiprocessing/resource_tracker.py, filed by a maintainer as benign.
    It was an `unclassified` error on a healthy log. Only a traceback wholly inside the tracker is let go."""
    assert not [f for f in found(DEV18 / "healthy" / "008_v050_tp_mp_backend_benign_resource_tracker_keyerror.log")
                if f.severity == "error"]
    tracker = ["Traceback (most recent call last):",
               '  File "/usr/lib/python3.10/multiprocessing/resource_tracker.py", line 209, in main',
               "    cache[rtype].remove(name)",
               "KeyError: '/psm_10b3d52e'"]
    assert [c for c, severity in named(tracker) if severity == "error"] == []
    through = [*tracker[:3], '  File "/opt/vllm/vllm/distributed/device_communicators/shm_broadcast.py", line 9, in '
               "__init__", "    self.shared_memory = shared_memory.SharedMemory(name=name)", tracker[3]]
    assert named(through)[0] == ("unclassified", "error")


def test_a_clients_400_is_the_requests_parameters_not_the_servers_start_up() -> None:
    """EleutherAI/lm-evaluation-harness#1735 (dev18 client_config 015, relabelled from invalid_argument: in this corpus
    that is argparse refusing vLLM's command line): lm_eval asked for more than 5 logprobs and got
    "openai.BadRequestError: Error code: 400 - {... 'Cannot request more than 5 logprobs.' ...}". It was an
    `unclassified` error "at start-up (launching)". A too-long prompt's 400 keeps its own name and numbers."""
    [finding] = found(DEV18 / "client_config" / "015_lm_eval_piqa_local_completions_more_than_5_logprobs.log")
    assert (finding.category, finding.severity) == ("unclassified", "warning")
    assert "HTTP 400" in finding.title and "--max-logprobs" in finding.fix
    too_long = ("openai.BadRequestError: Error code: 400 - {'object': 'error', 'message': \"This model's maximum "
                "context length is 4096 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the "
                "completion). Please reduce the length of the messages or completion.\", 'code': 400}")
    assert named([too_long])[0][0] == "request_too_long"
    unknown = ["Traceback (most recent call last):", '  File "/app/x.py", line 3, in <module>', "    go()",
               "openai.InternalServerError: Error code: 503"]
    assert all("start-up" not in f.title for f in findings_of_both_readers("\n".join(unknown)))
