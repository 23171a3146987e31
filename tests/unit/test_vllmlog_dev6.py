"""The classifier's rules written from corpus/dev6 (and the dev3-dev5 logs of the same shapes), each test citing
its log and the public thread it came from. None of these logs is in the frozen test half (tests/logcorpus.py),
which no test reads. Each rule reads a structure, not a wording: the frames a cut traceback stopped in (the sampler,
the server's prompt preprocessing, the engine's wait on its workers), the shape of a pasted answer (a loop: a window
of it with few distinct words and marks; letters of three families of writing systems, answer after answer), and
what shows an answer did not stop at the end of its turn (its chat template's markers, a new user turn, nothing but
whitespace, finish_reason "length"). Every text is read by both of troubleshoot's readers, which must agree."""

from __future__ import annotations

from qwenops.vllmlog.classify import looping
from tests.logcorpus import LOGS
from tests.logreaders import categories, findings_of_both_readers, found

CORPUS = LOGS / "corpus"
DEV6 = CORPUS / "dev6"


def test_a_traceback_cut_in_the_sampler_before_any_request_is_the_dummy_sampler_runs_oom() -> None:
    """vllm-project/vllm#12529 (corpus/dev5 profile_oom 011, V1 0.8.0, the top-k/top-p sampler) and NVIDIA/nccl#1790
    (dev5 012, a TP2 test): excerpts that start and end inside vLLM's sampler (v1/sample/sampler.py: forward, sample),
    no request served, no exception line. At start-up the sampler runs only in the dummy runs: the profiling run's
    (profile_oom), or the warm-up after the KV cache (cudagraph_oom, as vLLM's own warm-up message says)."""
    for name in ("011_v080_v1_sampler_topk_topp_oom_profile_run.log",
                 "012_nccl_vllm_test_tp2_sampler_oom_multiproc_executor.log"):
        assert categories(CORPUS / "dev5/profile_oom" / name)[0] == "profile_oom", name
    frames = ['  File "/opt/vllm/vllm/v1/sample/sampler.py", line 54, in forward',
              '  File "/opt/vllm/vllm/v1/sample/sampler.py", line 121, in sample']
    after_kv = ["INFO 03-20 02:28:50 [gpu_worker.py:1] Available KV cache memory: 20.1 GiB", *frames]
    assert findings_of_both_readers("\n".join(after_kv))[0].category == "cudagraph_oom"
    serving = ['INFO:     127.0.0.1:5312 - "POST /v1/chat/completions HTTP/1.1" 200 OK', *frames,
               "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB."]
    assert findings_of_both_readers("\n".join(serving))[0].category == "runtime_oom"


def test_a_traceback_cut_in_the_servers_prompt_preprocessing_is_one_refused_request() -> None:
    """vllm-project/vllm#16375 (dev6 request_too_long 009, 0.8): "Error in preprocessing prompt inputs", then the
    traceback through create_completion, _preprocess_completion and a thread's run, cut before the ValueError. The
    OpenAI server's prompt preprocessing is where the length is checked: one request refused (a warning), not an
    unexplained error; V1's renderer (_create_tokens_prompt) the same."""
    path = DEV6 / "request_too_long/009_v08_benchmark_sonnet_prefix0_preprocessing_traceback_cut.log"
    assert [(f.category, f.severity) for f in found(path)] == [("request_too_long", "warning")]
    renderer = ['  File "/usr/local/lib/python3.12/dist-packages/vllm/entrypoints/renderer.py", line 398, in '
                "_create_tokens_prompt", "    raise ValueError("]
    assert findings_of_both_readers("\n".join(renderer))[0].category == "request_too_long"


def test_a_timeout_under_the_executors_wait_for_its_workers_is_a_stalled_engine() -> None:
    """vllm-project/vllm#37250 (dev6 engine_stalled 018, Ray Data, Qwen3.5-397B): shared-memory waits, then the engine
    core's traceback through multiproc_executor's wait_for_response, cut before "RPC call to sample_tokens timed
    out". The executor waiting on its workers is the same wait as shm_broadcast's dequeue."""
    path = DEV6 / "engine_stalled/018_ray_data_qwen35_397b_shm_wait_rpc_sample_tokens_timed_out.log"
    assert next((f.category, f.severity) for f in found(path)) == ("engine_stalled", "error")


def test_an_answer_caught_in_a_loop_is_incoherent_in_any_language() -> None:
    """vllm-project/vllm-ascend#6533 (dev6 003: a JSON answer of commas and '我'), #1743 (dev6 004: punctuation soup
    ',.,. and,.,,,'), #10503 (dev6 024: 'and the English and the English ...'). A window of a loop has a handful
    of distinct words and marks; prose, code and log lines have many more, and table rules and bars do not count."""
    for name in ("003_ascend_v014rc1_910b4_qwen3vl8b_comma_loop_curl_json.log",
                 "004_ascend_v091rc1_qwen3_235b_dp4_tp4_punctuation_soup_completion.log",
                 "024_ascend_v0202rc1_910b_two_node_kimi_k25_w4a8_repeated_english_and_the.log"):
        assert categories(DEV6 / "incoherent_output" / name)[0] == "incoherent_output", name
    assert looping("is is is is is is is is is is is is is is is is is is is is is is is is is is")
    prose = ("I am an AI language model designed to assist with various tasks, such as answering questions, "
             "providing information, and generating text. I do not have a physical form or personal identity.")
    assert looping(prose) is None
    assert looping("|-----|------:|----------------|-----:|-----------|---|----:|---|-----:|" * 3) is None
    bar = "Processed prompts: 100%|" + "█" * 80 + "| 4/4 [00:00<00:00,  4.06it/s]"
    assert looping(bar) is None
    assert findings_of_both_readers(f'{{"choices":[{{"text":"{prose}","finish_reason":"stop"}}]}}') == []


def test_answers_that_each_mix_three_families_of_writing_systems_are_token_salad() -> None:
    """vllm-project/vllm-ascend#463 (dev6 002, 910B, vLLM 0.7): four `Generated text:` answers, the first two each
    mixing Latin, Han and a third family (Hebrew, Thai). One such line is a Chinese question with a Russian name
    (test_vllmlog_dev5 keeps it quiet); answer after answer like that is decoded token salad."""
    path = DEV6 / "incoherent_output/002_ascend_910b_pip_v07_offline_multilingual_token_salad.log"
    assert categories(path)[0] == "incoherent_output"
    one = "请问 vLLM 的 max_model_len 怎么设置 ЛЛМ"
    assert findings_of_both_readers(one) == []
    assert findings_of_both_readers(f"{one}\n{one.replace('ЛЛМ', 'Тест')}")[0].category == "incoherent_output"


def test_an_answer_that_did_not_stop_at_the_end_of_its_turn_is_said_so() -> None:
    """What shows an answer ran on, outside troubleshoot's vocabulary (unclassified, a warning, with the fix):
    the chat template's turn markers written by the model (vllm-project/vllm#13952, dev3 076; vllm#7628, dev4 086),
    a new user turn it wrote itself (stanfordnlp/dspy#931, dev4 080), whitespace escapes line after line
    (vllm#42110, dev4 085), an answer cut only by max_tokens (meta-llama/codellama#89, dev6 014)."""
    dev3 = CORPUS / "dev3/runaway_generation"
    for path in (dev3 / "076_v07_llama31_8b_base_homemade_chat_tags_repeats_to_max_tokens.log",
                 CORPUS / "dev4/runaway_generation/080_dspy_llama3_70b_no_eot_stop_continues_qa.log",
                 CORPUS / "dev4/runaway_generation/085_v020_gemma4_json_schema_whitespace_forever.log",
                 CORPUS / "dev4/runaway_generation/086_v05_internvl_chat_v15_im_end_not_stop_repeats.log",
                 DEV6 / "runaway_generation/014_v01_codellama7b_completions_always_finish_length.log"):
        first = found(path)[0]
        assert (first.category, first.severity) == ("unclassified", "warning"), path.name
        assert "instruct" in first.fix and "stop" in first.fix, path.name


def test_turn_markers_in_a_prompt_or_a_template_are_no_runaway() -> None:
    """The same markers in the request's prompt (vLLM 0.1's unprefixed `Received request ...: prompt: '<|im_start|>`,
    dev6 healthy 006, vllm-project/vllm#1003; a pasted `prompt: '<|system|>...`, instructlab/training#232, dev3
    incoherent 048) or quoted in a chat template's source are the input, not an answer: nothing is said of them."""
    healthy = DEV6 / "healthy/006_v01_qwen7b_api_server_first_line_0_tok_s_then_28.log"
    assert found(healthy) == []
    template = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}{% endfor %}"
    assert findings_of_both_readers(template) == []
    assert findings_of_both_readers('{"choices":[{"text":"Paris.","finish_reason":"stop"}]}') == []


def test_dev6s_healthy_logs_with_alarming_warnings_stay_quiet() -> None:
    """corpus/dev6 healthy: a start-up whose only WARNING is a spurious KV-layout notice (vllm-project/vllm#20400),
    Python SyntaxWarnings before the logo (vllm#36020), gpustack's provisioning lines (gpustack/gpustack#5556), a
    user who thought 192 tokens/s slow (lmarena/arena-hard-auto#81), a CPU server at 1.3 tokens/s (vllm#50219):
    no error finding on any of them."""
    for path in sorted((DEV6 / "healthy").glob("*.log")):
        assert not any(f.severity == "error" for f in found(path)), path.name


def test_an_answer_whose_content_opens_with_the_models_reasoning_is_said_so() -> None:
    """vllm-project/vllm#34625 (dev3 incoherent_output 011, 0.15.1: a pass-through reasoning parser, the stream's
    delta content starts "<think>The") and MiniMax-AI/MiniMax-M1#29 (dev3 012, no reasoning parser: the message's
    content starts "<think>\\n"). A response's content that opens with the reasoning block: the server split none
    off. A request's messages holding one (a chat history) and a flag quoting the tag are no answer."""
    for name in ("011_minimax_m25_append_think_parser_think_in_content.log",
                 "012_minimax_m1_no_reasoning_parser_think_in_content.log"):
        first = found(CORPUS / "dev3/incoherent_output" / name)[0]
        assert (first.category, first.severity) == ("incoherent_output", "warning"), name
        assert "<think>" in first.title and "--reasoning-parser" in first.fix
    request = '{"model": "m", "messages": [{"role": "assistant", "content": "<think>ok</think> 4"}]}'
    assert findings_of_both_readers(request) == []
    flag = CORPUS / "dev4/bad_flag/002_v020_docker_reasoning_config_unrecognized.log"
    assert "incoherent_output" not in categories(flag)


def test_an_engine_found_dead_after_it_made_no_tokens_while_requests_ran_hung_first() -> None:
    """vllm-project/vllm-ascend#2245 (dev6 engine_stalled 016, 800I A2, 100 concurrent requests): a throughput line
    of 0.0 tokens/s with 56 requests running, nothing for five minutes, then the API server's streams fail as its
    engine is found dead (the traceback cut before the error). The death ended a hang: nothing failed before it.
    An exception that failed first (an OOM) is still the cause, and a stall after the death says nothing."""
    path = DEV6 / "engine_stalled/016_ascend_800i_a2_evalscope_100_concurrent_running_56_zero_tok_s.log"
    first = found(path)[0]
    assert (first.category, first.severity) == ("engine_stalled", "error")
    stalled = ("INFO 08-06 08:48:54 [loggers.py:118] Engine 000: Avg prompt throughput: 0.0 tokens/s, Avg generation "
               "throughput: 0.0 tokens/s, Running: 56 reqs, Waiting: 0 reqs, GPU KV cache usage: 20.1%")
    dead = "ERROR 08-06 08:53:41 [serving_chat.py:948] vllm.v1.engine.exceptions.EngineDeadError: EngineCore died."
    assert findings_of_both_readers(f"{stalled}\n{dead}")[0].category == "engine_stalled"
    assert findings_of_both_readers(f"{dead}\n{stalled}")[0].category == "engine_dead"
    oom = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB."
    assert findings_of_both_readers(f"{stalled}\n{oom}\n{dead}")[0].category != "engine_stalled"


def test_late_first_tokens_beside_a_full_kv_cache_with_requests_waiting_follow_from_the_queue() -> None:
    """dennislee22/vLLM-benchmarking (dev4 kv_cache_full 060, 0.10.1.1): a benchmark's mean TTFT of 29 s and the
    engine's throughput lines with 59-82 requests waiting at 96.7-100% KV cache usage. The wait for KV cache room is
    why first tokens come late: the full cache is named first, the latency under it."""
    path = CORPUS / "dev4/kv_cache_full/060_v010_a100_gmu025_kv5gib_waiting_ttft_29s.log"
    assert categories(path)[:2] == ["kv_cache_full", "high_latency"]
