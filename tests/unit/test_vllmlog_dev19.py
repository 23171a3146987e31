"""The classifier's rules written from corpus/dev19 (scored fresh first: 13 of 18 named right before any rule, with the
dev18 rules), each test citing its log and the public thread it came from. None of these logs is in the frozen test
half (tests/logcorpus.py), which no test reads. Every text is read by both of troubleshoot's readers, which must
agree."""

from __future__ import annotations

from tests.logcorpus import LOGS
from tests.logreaders import findings_of_both_readers, found

DEV19 = LOGS / "corpus" / "dev19"


def named(lines: list[str]) -> list[tuple[str, str]]:
    return [(f.category, f.severity) for f in findings_of_both_readers("\n".join(lines))]


def test_modelscopes_words_for_a_repo_it_does_not_have() -> None:
    """CraftJarvis/JarvisVLA#5 (dev19 model_not_found 007): `vllm serve jarvis_vla_qwen2_vl_7b_sft`, a name that is
    neither a local directory nor a hub repo: "The request model: jarvis_vla_qwen2_vl_7b_sft does not exist!". It was
    silent."""
    [finding] = found(DEV19 / "model_not_found" / "007_jarvisvla_serve_bare_model_name_not_on_hub.log")
    assert finding.category == "model_not_found"
    assert named(["requests.exceptions.HTTPError: The request model: org/missing does not exist!"])[0] == \
        ("model_not_found", "error")


def test_a_body_made_for_another_endpoint_is_the_clients_request() -> None:
    """EleutherAI/lm-evaluation-harness#3125 (dev19 client_config 008): lm_eval's local-completions sent a `prompt` to
    /v1/chat/completions: "{'type': 'missing', 'loc': ('body', 'messages'), 'msg': 'Field required', ...}". It was
    silent (no status in the pasted line). The server's request validation naming a body field is the request's
    own shape."""
    [finding] = found(DEV19 / "client_config" / "008_lmeval_local_completions_prompt_to_chat_endpoint_400.log")
    assert (finding.category, finding.severity) == ("unclassified", "warning")
    assert "HTTP 400" in finding.title and "/v1/chat/completions" in finding.fix
    assert named(['{"detail":[{"type":"missing","loc":["body","model"],"msg":"Field required"}]}'])[0] == \
        ("unclassified", "warning")


def test_an_answer_filed_whole_as_reasoning_is_named_with_the_parser_fix() -> None:
    """QuantumNous/new-api#1255 (dev19 incoherent_output 010): Qwen3 with `enable_thinking: false` behind the
    deepseek_r1 parser: the whole answer came back in `reasoning_content`, `content` null. It was silent. Only a
    response's message counts: a streamed delta holds reasoning and no content while the model thinks."""
    [finding] = found(DEV19 / "incoherent_output" / "010_newapi_qwen3_nothink_answer_in_reasoning_content_r1_"
                      "parser.log")
    assert (finding.category, finding.severity) == ("incoherent_output", "warning")
    assert "--reasoning-parser qwen3" in finding.fix
    one_line = ('{"choices":[{"index":0,"message":{"role":"assistant","reasoning_content":"I am Qwen3.","content":'
                'null},"finish_reason":"stop"}]}')
    assert named([one_line]) == [("incoherent_output", "warning")]
    streamed = [f'data: {{"choices":[{{"index":0,"delta":{{"reasoning_content":"{word}","content":null}}}}]}}'
                for word in ("Let", " me", " think")]
    assert named(streamed) == []
    answered = ['{"choices":[{"message":{"role":"assistant","reasoning_content":"Sum it.","content":"4"}}]}']
    assert named(answered) == []
    far = ['"message": {', *(f'  "field{n}": {n},' for n in range(12)), '"reasoning_content": "x",', '"content": null']
    assert named(far) == []  # not one message's fields


def test_a_lora_on_modules_vllm_does_not_serve_is_the_configuration() -> None:
    """modelscope/ms-swift#4974 (dev19 invalid_config 013): a LoRA on InternVL3's aligner (`mlp1`) refused by vLLM
    0.9.2: "expected target modules in [...] but received ['mlp1.1', ...]", then EngineDeadError. It was
    `unclassified`, then `engine_dead`."""
    [first, *_] = found(DEV19 / "invalid_config" / "013_swift_deploy_internvl3_lora_on_vision_mlp1_rejected.log")
    assert first.category == "invalid_config"


def test_the_host_out_of_memory_mapping_a_shard_is_the_weights_not_the_gpu() -> None:
    """vllm-project/vllm#9753 (dev19 weights_oom 016): a 3B model on an A10 in a small container: "unable to mmap
    4965799096 bytes from file <...safetensors>: Cannot allocate memory". It was silent."""
    [finding] = found(DEV19 / "weights_oom" / "016_v063_llama32_3b_a10_mmap_safetensors_cannot_allocate.log")
    assert finding.category == "weights_oom" and "RAM, not the GPU" in finding.title
    assert "memory limit" in finding.fix
