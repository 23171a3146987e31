"""The classifier's rules written from corpus/dev21 (scored fresh first: 7 of 12 named right before any rule, with the
dev20 rules; 12 threads outside vllm-project/vllm, four through LMCache), each test citing its log and the public
thread it came from. None of these logs is in the frozen test half (tests/logcorpus.py), which no test reads. Every
text is read by both of troubleshoot's readers, which must agree."""

from __future__ import annotations

from tests.logcorpus import LOGS
from tests.logreaders import findings_of_both_readers, found

DEV21 = LOGS / "corpus" / "dev21"


def named(lines: list[str]) -> list[tuple[str, str]]:
    return [(f.category, f.severity) for f in findings_of_both_readers("\n".join(lines))]


def test_cuda_error_803_is_the_driver_and_the_images_cuda() -> None:
    """gpustack/gpustack#4678 and llm-d/llm-d#706 (dev21 cuda_driver_mismatch 001, 012): vLLM 0.14-0.15 images on a
    host driver they do not fit: "Error 803: system has unsupported display driver / cuda driver combination". Both
    were `unclassified` (804, forward compatibility, was known)."""
    for name in ("001_gpustack_vllm015_image_error803.log", "012_llmd_v050_vllm0141_error803_set_device.log"):
        [first, *_] = found(DEV21 / "cuda_driver_mismatch" / name)
        assert first.category == "cuda_driver_mismatch", name


def test_the_openai_client_without_a_key_is_an_auth_finding_with_any_word_as_the_fix() -> None:
    """EleutherAI/lm-evaluation-harness#1963 (dev21 auth 002): lm_eval's chat backend against a server without
    --api-key: "openai.OpenAIError: The api_key client option must be set ...". It was `unclassified`."""
    [finding] = found(DEV21 / "auth" / "002_lmeval_local_chat_completions_no_api_key.log")
    assert finding.category == "auth" and "OPENAI_API_KEY=EMPTY" in finding.fix


def test_torch_21s_spelling_of_its_out_of_memory_figures() -> None:
    """xorbitsai/inference#1361 (dev21 insufficient_free_memory 005): a second model on a 24 GB card while another
    process held 22 GiB; torch 2.1 wrote "total capacty of 23.53 GiB of which 329.44 MiB is free", a spelling the
    figures' reader missed, so it was `runtime_oom`. (With the figures read, corpus/dev17 weights_oom 013, a 72B model
    on one shared GPU, names the other processes first and its own OOM second.)"""
    [first, *_] = found(DEV21 / "insufficient_free_memory" / "005_xinference_second_model_gpu_held.log")
    assert first.category == "insufficient_free_memory" and "22.2 of the GPU's 23.53 GiB" in first.title


def test_a_traceback_through_the_kv_connectors_constructor_is_its_configuration() -> None:
    """LMCache/LMCache#1909 (dev21 invalid_config 011): vLLM's LMCache connector refused its CPU buffer size ("must
    be a multiple of align bytes"), the traceback cut inside `create_connector`. It was `unclassified` (a traceback
    cut before its exception line). What the KV connector's construction raises is --kv-transfer-config's fault."""
    [first, *_] = found(DEV21 / "invalid_config" / "011_lmcache_cpu_buffer_not_multiple_of_align.log")
    assert first.category == "invalid_config"
    raised = ["Traceback (most recent call last):",
              '  File "/opt/vllm/distributed/kv_transfer/kv_connector/factory.py", line 61, in create_connector',
              "    return connector_cls(config, role)",
              "AssertionError: Buffer size 5368709120 must be a multiple of align bytes 17989632"]
    assert named(raised)[0] == ("invalid_config", "error")
