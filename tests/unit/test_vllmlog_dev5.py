"""The classifier's rules written from corpus/dev5 (and dev4, dev3) logs, each test citing its log and the
public thread it came from. None of these logs is in the frozen test half (tests/logcorpus.py), which no test
reads. Each rule reads a structure (an OOM message's figures, a hub library's exception type, the frames a
timeout was raised under, the scripts of an answer's letters, a benchmark's measured latency), so the tests
also try the same structure in the other wordings vLLM, torch and the client libraries print."""

from __future__ import annotations

from pathlib import Path

from qwenops.troubleshoot.run import classify_source
from qwenops.troubleshoot.sources import file_source
from qwenops.vllmlog.classify import degenerate
from tests.logcorpus import LOGS
from tests.logreaders import findings_of_both_readers

CORPUS = LOGS / "corpus"


def categories(path: Path) -> list[str]:
    """The categories `troubleshoot --log PATH` names, first to last."""
    found, _ = classify_source(file_source(str(path)), {})
    return [f.category for f in found]


def first(text: str) -> str:
    found = findings_of_both_readers(text)
    assert found, text
    return found[0].category


def named(text: str) -> list[str]:
    return [f.category for f in findings_of_both_readers(text)]


def test_an_oom_with_little_free_but_little_held_by_this_process_is_another_process() -> None:
    """vllm-project/vllm-ascend#19 (dev5 025): torch_npu's figures carry an extra "current active" field: 60.97 GiB
    total, 10.65 GiB reserved by this process, 19 MiB free: about 50 GiB held by something else. Read in any
    accelerator's wording and unit (KiB free, torch's newer sentence), the same arithmetic names it."""
    npu = CORPUS / "dev5/insufficient_free_memory/025_ascend_v071rc1_npu_oom_19mib_free_10gib_by_pytorch.log"
    assert categories(npu)[0] == "insufficient_free_memory"
    newer = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 MiB. GPU 6 has a total capacity of "
             "44.53 GiB of which 448.00 KiB is free. Including non-PyTorch memory, this process has 9.50 GiB memory "
             "in use.")
    assert first(newer) == "insufficient_free_memory"
    alone = newer.replace("9.50 GiB memory", "44.20 GiB memory")  # this process holds it all: its own OOM
    assert first(alone) == "runtime_oom"


def test_a_model_hub_that_has_no_such_model_or_path_is_model_not_found() -> None:
    """vllm-project/vllm-ascend#829 (dev5 033): "modelscope.hub.errors.NotExistError: The model: ... has no
    revision: main !"; gpustack/gpustack#4292 (dev5 004): transformers' "Can't load the configuration of '/model'"
    for a volume not mounted in the pod. Any hub library's NotFound/NotExist exception type, and transformers'
    OSError in its wordings across versions, name the same cause."""
    assert categories(CORPUS / "dev5/model_not_found/033_ascend_modelscope_notexisterror_no_revision_main.log"
                      )[0] == "model_not_found"
    assert categories(CORPUS / "dev5/model_not_found/004_gpustack_k8s_model_volume_not_mounted_cant_load_configuration"
                      ".log")[0] == "model_not_found"
    for line in ("huggingface_hub.errors.EntryNotFoundError: 404 Client Error.",
                 "OSError: Can't load config for '/models/qwen'. If you were trying to load it from",
                 "OSError: Incorrect path_or_model_id: '/data/m'. Please provide either the path to a local folder"):
        assert first(line) == "model_not_found", line
    assert "model_not_found" not in named("FileNotFoundError: [Errno 2] No such file or directory: '/tmp/x.jinja'")


def test_a_timeout_raised_under_vllms_media_fetch_is_the_fetch_not_a_client() -> None:
    """dev4 020 (vLLM 0.6.4, an image URL that did not answer): `raise asyncio.TimeoutError` under
    `async_fetch_image`; dev4 023 (0.8.4): the 500's access line with uvicorn's "Exception in ASGI application"
    glued on, then aiohttp's connect frames: a client library inside the HTTP server's own traceback is the
    server's outbound request. Both are vLLM fetching media, not a client timing out on vLLM."""
    assert categories(CORPUS / "dev4/media_fetch_error/020_v064_wiki_image_url_async_fetch_image_timeout.log"
                      )[0] == "media_fetch_error"
    assert categories(CORPUS / "dev4/media_fetch_error/023_v084_qwen2vl_wikimedia_url_aiohttp_connect_500.log"
                      )[0] == "media_fetch_error"
    client = ('Traceback (most recent call last):\n  File "/app/.venv/lib/python3.12/site-packages/httpx/_transports/'
              'default.py", line 101, in map_httpcore_exceptions\n    yield\nhttpx.ReadTimeout: timed out')
    assert first(client) == "client_timeout"  # the same library in a client's own traceback stays the client's


def test_a_gateway_timeout_is_the_client_side_giving_up() -> None:
    """vllm-project/vllm#19743 (benchmark_serving against a server behind a gateway): "Initial test run failed ...
    Error: Gateway Time-out": a proxy gave up waiting for the answer (HTTP 504), the server was not the one that
    failed."""
    assert first("ValueError: Initial test run failed - Please make sure benchmark arguments are correctly "
                 "specified. Error: Gateway Time-out") == "client_timeout"
    assert named('INFO:     10.0.0.2:5000 - "POST /v1/completions HTTP/1.1" 200 OK') == []


def test_an_answer_in_four_writing_systems_is_incoherent() -> None:
    """vllm-project/vllm#1385 (dev5 018, StarCoder after 0.2.0) and vllm-project/vllm#6060 (dev5 019, FastChat
    Qwen2-AWQ): random token ids decoded mix Latin, Han, Cyrillic, Hangul, Arabic, Kana, Thai, Hebrew in one line.
    A line in one language has one or two scripts (Chinese with Latin names: two), so it is not flagged."""
    for name in ("018_v020_starcoder_fim_completion_noise_json_body.log",
                 "019_fastchat_v043_qwen2_awq_garbled_multilingual_tokens.log"):
        assert categories(CORPUS / "dev5/incoherent_output" / name) == ["incoherent_output"], name
    assert degenerate("请问 vLLM 的 max_model_len 怎么设置 ЛЛМ") is None  # three scripts
    assert degenerate("ดาร价位 presenter �久しぶ האמריק") is not None
    assert named("INFO 01-01 00:00:00 [loggers.py:1] Engine 000: 吞吐 Avg generation throughput: 40.0 tokens/s") == []


def test_an_answer_of_exclamation_marks_is_incoherent() -> None:
    """The answer float16 overflow gives (corpus/c 001, vllm-project/vllm Qwen2 in fp16; corpus/d 002, Qwen3-Coder
    30B; corpus/b 085, QwQ AWQ TP2): every sampled token is "!". Those excerpts lost the answer itself; a paste
    that keeps it shows a long run of them."""
    assert first('{"choices":[{"message":{"content":"!!!!!!!!!!!!!!!!!!!!!!!!!!!!"}}]}') == "incoherent_output"
    assert named("WARNING!!! check your config") == []


def test_a_benchmarks_mean_time_to_first_token_of_seconds_is_high_latency() -> None:
    """vllm-project/vllm#8104 (dev5 029): benchmark_serving's "Mean TTFT (ms): 515454" (1000 prompts at once);
    dev3 052 (guided decoding): a pandas describe() under "First token latency(msecs):" with mean 38533. Both are
    answers that start tens of seconds late while nothing failed; a mean under 10 s is not flagged."""
    assert categories(CORPUS / "dev5/high_latency/029_benchmark_serving_1000_prompts_rate_inf_ttft_515s.log"
                      ) == ["high_latency"]
    assert categories(CORPUS / "dev3/high_latency/052_outlines_guided_decoding_ttft_38s_benchmark.log"
                      ) == ["high_latency"]
    assert findings_of_both_readers("Mean TTFT (ms):                          812.40") == []
    assert findings_of_both_readers("mean     38533.083248") == []  # a mean with no first-token heading above


def test_a_404_answer_is_a_model_or_route_the_server_does_not_serve() -> None:
    """dev4 100/103/107 (vLLM's error body "The model `X` does not exist.", "code": 404), 102/106 (the openai
    client's "Error code: 404 - {...}"), 104 (uvicorn's access line `"POST /chat/completions HTTP/1.1" 404`, a base
    URL without /v1): the request named something the server does not serve. Troubleshoot's vocabulary has no
    name for a client's request, so it is `unclassified`, a warning (the server works), with what to send instead.
    A browser's GET of `/` answered 404 on a healthy server is not flagged."""
    for name in ("100_v03_request_model_name_not_served_404.log", "104_meilisearch_base_url_without_v1_404.log",
                 "106_longbench_model_path_name_mismatch_404.log", "107_v028_pr_unknown_model_name_404_body.log"):
        assert categories(CORPUS / "dev4/client_config" / name)[:1] == ["unclassified"], name
    found = findings_of_both_readers('{"object":"error","message":"The model `m` does not exist.",'
                                     '"type":"NotFoundError","param":null,"code":404}')
    assert [(f.category, f.severity) for f in found] == [("unclassified", "warning")]
    assert "/v1/models" in found[0].fix
    assert named('INFO:     10.0.0.9:4242 - "GET / HTTP/1.1" 404 Not Found') == []
