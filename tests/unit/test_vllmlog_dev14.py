"""The classifier's rules written from corpus/dev14, each test citing its log and the public thread it came from.
None of these logs is in the frozen test half (tests/logcorpus.py), which no test reads. The rules read vLLM's, Ray's
and the model hubs' own messages (their words and numbers), and one structure (a device fault read twice), never one
log's sentence. Every text is read by both of troubleshoot's readers, which must agree."""

from __future__ import annotations

from qwenops.vllmlog.classify import _PLACEMENT_FIX
from tests.logcorpus import LOGS
from tests.logreaders import findings_of_both_readers, found

DEV14 = LOGS / "corpus" / "dev14"


def categories_of(lines: list[str]) -> list[str]:
    return [f.category for f in findings_of_both_readers("\n".join(lines))]


def test_the_fatal_signal_from_worker_processes_is_the_engine_dying() -> None:
    """vllm-project/vllm#16259 (dev14 engine_dead 004): Ray workers crashed on the first query; V1's engine client
    logs "CRITICAL ... [core_client.py:361] Got fatal signal from worker processes, shutting down." and the log
    holds nothing else. That is vLLM's own line for a worker process that died: the engine dies with it. It was
    `unclassified` (an ERROR line no rule explains)."""
    [finding] = found(DEV14 / "engine_dead" / "004_v08x_ray_docker_compose_fatal_signal_from_worker_processes.log")
    assert finding.category == "engine_dead" and finding.severity == "error"
    # the same line in any log (no Ray); after a worker's own traceback, the worker's error comes first
    fatal = ("ERROR 06-01 10:00:01 [core_client.py:375] Got fatal signal from worker processes, shutting down. See "
             "stack trace above for root cause issue.")
    assert [(f.category, f.severity) for f in findings_of_both_readers(fatal)] == [("engine_dead", "error")]
    worker = ["Traceback (most recent call last):",
              '  File "/usr/lib/python3.12/site-packages/vllm/v1/executor/multiproc_executor.py", line 465, in '
              'worker_busy_loop',
              "RuntimeError: something no rule names", fatal]
    assert [(f.category, f.severity) for f in findings_of_both_readers("\n".join(worker))] == \
        [("unclassified", "error"), ("engine_dead", "info")]


def test_a_404_from_a_model_hubs_model_api_is_a_model_not_found() -> None:
    """vllm-project/vllm#2629 (dev14 model_not_found 016): the quickstart's LLM(model="gpt2") with ModelScope in
    effect; requests' "404 Client Error: Not Found for url: https://www.modelscope.cn/api/v1/models/gpt2/revisions?..."
    under ModelScope's hub frames. A hub that answers 404 for the model's own API has no such repo: the model id
    is not found. It was `unclassified` (the rule knew only huggingface.co's URLs)."""
    [finding] = found(DEV14 / "model_not_found" / "016_v02x_quickstart_gpt2_modelscope_404_not_found.log")
    assert finding.category == "model_not_found" and finding.severity == "error"
    for line in ("requests.exceptions.HTTPError: 404 Client Error: Not Found for url: "
                 "https://hf-mirror.com/api/models/Qwen/Qwen3-14B-Typo/revision/main",
                 "requests.exceptions.HTTPError: 404 Client Error: Not Found for url: "
                 "https://modelscope.cn/api/v1/models/qwen/Qwen3-14B-Typo/revisions",
                 # an HF_ENDPOINT of one's own: the hub's model API, whatever the host
                 "requests.exceptions.HTTPError: 404 Client Error: Not Found for url: "
                 "http://hub.internal:8080/api/models/team/model-x/revision/main",
                 "huggingface_hub.errors.HfHubHTTPError: 401 Client Error: Unauthorized for url: "
                 "https://hf-mirror.com/api/models/meta-llama/Llama-3.1-8B"):
        assert categories_of([line]) == ["model_not_found"], line
    # a 404 from any other URL (an image a request named) is not a model
    assert "model_not_found" not in categories_of([
        "requests.exceptions.HTTPError: 404 Client Error: Not Found for url: https://example.com/images/cat.png"])


def test_a_placement_group_ray_cannot_fill_is_an_invalid_config() -> None:
    """vllm-project/vllm#14186 (dev14 invalid_config 010): run_cluster.sh with VLLM_HOST_IP set to a public address
    while the Ray cluster runs on 172.16.1.2; Ray's autoscaler: "Error: No available node types can fulfill resource
    request {'node:111.6.168.225': 0.001, 'GPU': 1.0}", then vLLM's "Waiting for creating a placement group of
    specs for 10 seconds". The cluster cannot give what the placement group asks for (more GPUs than it has, or a
    node it does not have): `invalid_config`, as a tensor_parallel_size larger than the GPUs is. It was silent."""
    findings = found(DEV14 / "invalid_config" / "010_v07x_ray_run_cluster_placement_group_node_ip_not_in_cluster.log")
    assert [(f.category, f.severity) for f in findings] == [("invalid_config", "error"), ("invalid_config", "warning")]
    assert findings[0].fix == _PLACEMENT_FIX and "VLLM_HOST_IP" in findings[0].fix
    assert "tensor_parallel_size" in findings[0].fix
    # vLLM's own error when its wait ends, and its older check of the GPUs against the cluster's
    for line in ("ValueError: Cannot provide a placement group of placement_group_specs=[{'GPU': 1.0}, {'GPU': 1.0}, "
                 "{'GPU': 1.0}, {'GPU': 1.0}] within 1800 seconds. See `ray status` to make sure the cluster has "
                 "enough resources.",
                 "ValueError: The number of required GPUs exceeds the total number of available GPUs in the "
                 "placement group."):
        assert [(f.category, f.severity) for f in findings_of_both_readers(line)] == [("invalid_config", "error")]
    # the wait alone is a warning: a node that joins late ends it, and the start-up goes on
    wait = ("INFO 03-03 22:56:16 ray_utils.py:221] Waiting for creating a placement group of specs for 10 seconds. "
            "specs=[{'GPU': 1.0}, {'GPU': 1.0}]. Check `ray status` to see if you have enough resources.")
    assert [(f.category, f.severity) for f in findings_of_both_readers(wait)] == [("invalid_config", "warning")]


def test_a_device_fault_read_twice_is_one_engine_death() -> None:
    """vllm-project/vllm#11366 (dev14 engine_dead 019): the title quotes "RuntimeError: CUDA error: an illegal
    memory access was encountered"; the log below it shows the same fault in model execution (V0's
    async_llm_engine: "Error in model execution: CUDA error: an illegal memory access was encountered"). Read first,
    with nothing to place it, the title was an unexplained start-up crash and came first (`unclassified`); it is the
    same fault the engine died of, and that reading says where it happened: `engine_dead` alone."""
    [finding] = found(DEV14 / "engine_dead" / "019_v06x_occasional_illegal_memory_access_model_execution_crlf_"
                      "marks.log")
    assert finding.category == "engine_dead" and finding.severity == "error" and "device fault" in finding.title
    # another fault in the title than the one the engine died of is still reported first
    other = ["[Bug]: RuntimeError: CUDA error: device-side assert triggered",
             "ERROR 12-19 21:40:35 async_llm_engine.py:64] RuntimeError: Error in model execution: CUDA error: an "
             "illegal memory access was encountered"]
    assert categories_of(other)[0] == "unclassified"


def test_the_kv_cache_check_retyped_is_read_by_its_tail_and_numbers() -> None:
    """langchain-ai/langchain#17906 (dev14 max_len_exceeds_kv 007): vLLM's check retyped in the reporter's prose
    with curly quotes and a typo in its head ("The model's max sew len (32768) is larger than the maximum number of
    tokens that can be stored in KV cache (18896)"). The tail is vLLM's words with both its numbers: the length
    asked for does not fit in what the KV cache holds. It was silent."""
    [finding] = found(DEV14 / "max_len_exceeds_kv" / "007_langchain_vllm_mistral7b_max_seq_len_32768_kv_18896_"
                      "prose.log")
    assert finding.category == "max_len_exceeds_kv" and finding.severity == "error"
    assert "max_model_len" in finding.fix and "18896" in finding.fix
    assert categories_of(["ValueError: max_model_len (40960) is larger than the maximum number of tokens that can "
                          "be stored in KV cache (21344). Try increasing gpu_memory_utilization"]) \
        == ["max_len_exceeds_kv"]
    assert categories_of(["the maximum number of tokens that can be stored in KV cache (21344) is plenty"]) == []
