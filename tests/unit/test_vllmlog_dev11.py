"""The classifier's rules written from corpus/dev11, each test citing its log and the public thread it came from.
None of these logs is in the frozen test half (tests/logcorpus.py), which no test reads. The rules read structure
where the log has it (vLLM's parallel-config check and its numbers, the GPU's dtype check named by a traceback's
frame, an HTTP client's error status for a media file's URL) and argparse's or vLLM's own words where a reporter
quotes them (a title, the prose around a paste), never one log's sentence. Every text is read by both of
troubleshoot's readers, which must agree."""

from __future__ import annotations

from tests.logcorpus import LOGS
from tests.logreaders import findings_of_both_readers, found

DEV11 = LOGS / "corpus" / "dev11"


def categories_of(lines: list[str]) -> list[str]:
    return [f.category for f in findings_of_both_readers("\n".join(lines))]


def test_a_parallel_size_that_does_not_divide_the_attention_heads_is_invalid_config() -> None:
    """vllm-project/vllm#414 (dev11 invalid_config 016, 0.2.x under FastChat on Ray): "ValueError: Total number of
    attention heads (52) must be divisible by tensor parallel size (3)." as the title; vllm-project/vllm#52435 (dev11
    017, a 2026 build): "Value error, Total number of attention heads (64) must be divisible by tensor parallel size
    (3)." under "n_physical_experts=256 must be divisible by ep_size=3"; gpustack/gpustack#2259 (dev11 015): GPUStack
    chose --tensor-parallel-size 3 for gemma-3-27b-it, "The auto-scheduling results do not meet the requirement of
    being divisible by the number of attention heads". vLLM's parallel-config check refuses the size before anything
    loads: invalid_config, and the fix lists the sizes that divide the heads."""
    for path in ("invalid_config/015_gpustack_v085_gemma3_27b_auto_schedule_tp3_heads_not_divisible.log",
                 "invalid_config/016_v02x_fastchat_ray_codellama13b_tp6_tp5_heads_not_divisible.log",
                 "invalid_config/017_v0x_2026_deepseek_v4_flash_tp3_ep_heads_64_not_divisible_by_3.log"):
        first = found(DEV11 / path)[0]
        assert first.category == "invalid_config" and first.severity == "error", path
    [finding] = findings_of_both_readers("ValueError: Total number of attention heads (40) must be divisible by "
                                         "tensor parallel size (6).")
    assert finding.category == "invalid_config" and "(1, 2, 4, 5, 8, 10)" in finding.fix
    assert categories_of(["AssertionError: n_physical_experts=256 must be divisible by ep_size=3. Adjust "
                          "num_redundant_experts."]) == ["invalid_config"]
    for other in ("the attention heads are split across the GPUs", "tensor parallel size 4 works fine"):
        assert categories_of([other]) == [], other


def test_a_traceback_through_the_gpu_dtype_check_is_unsupported_dtype_even_cut_before_its_message() -> None:
    """netease-youdao/QAnything#233 (dev11 unsupported_dtype 010, vLLM 0.3 in QAnything's container): an RTX 2080 Ti,
    the traceback cut by the reporter at `raise ValueError(` inside `_check_if_gpu_supports_dtype`. That check raises
    for one reason only, a dtype (bfloat16) the GPU's compute capability lacks: the frame names the cause where the
    message is gone. A traceback cut anywhere else stays as it was."""
    [finding] = found(DEV11 / "unsupported_dtype" /
                      "010_qanything_docker_rtx2080ti_bfloat16_check_if_gpu_supports_dtype.log")
    assert finding.category == "unsupported_dtype" and finding.severity == "error"
    frames = ["Traceback (most recent call last):",
              '  File "/usr/local/lib/python3.10/dist-packages/vllm/worker/worker.py", line 71, in init_model',
              "    _check_if_gpu_supports_dtype(self.model_config.dtype)",
              '  File "/usr/local/lib/python3.10/dist-packages/vllm/worker/worker.py", line 231, in '
              "_check_if_gpu_supports_dtype",
              "    raise ValueError("]
    assert categories_of(frames) == ["unsupported_dtype"]
    # the same check under V0's init_device (0.4-0.6), where a ValueError alone is the free-memory check's
    assert categories_of([*frames[:1], '  File "/v/vllm/worker/worker.py", line 120, in init_device',
                          "    _check_if_gpu_supports_dtype(self.model_config.dtype)", *frames[3:]]) \
        == ["unsupported_dtype"]


def test_vllms_refusal_of_float16_for_a_model_is_invalid_config() -> None:
    """intel/llm-scaler#270 (dev11 invalid_config 012, 0.11.2.dev0 on Intel XPU): "Gemma3 models fail with --dtype
    float16 (vLLM rejects fp16 due to numerical instability)", the error itself cut off. vLLM keeps a list of
    architectures it refuses to run in float16 ("does not support float16. Reason: Numerical instability"): the
    model refuses the dtype, not the GPU, so invalid_config (as AWQ in bfloat16, corpus/dev2 027). fp16 output
    said to be broken is no refusal."""
    [finding] = found(DEV11 / "invalid_config/012_llm_scaler_xpu_v0112_gemma3_27b_dtype_float16_rejected.log")
    assert finding.category == "invalid_config" and "bfloat16" in finding.fix
    assert categories_of(["The model type 'gemma3' does not support float16. Reason: Numerical instability. "
                          "Please use bfloat16 or float32 instead."]) == ["invalid_config"]
    for other in ("Gemma 3 is broken with fp16", "fp16 works, numerical instability is rare on this model"):
        assert categories_of([other]) == [], other


def test_argparses_unrecognized_arguments_quoted_in_a_title_is_invalid_argument() -> None:
    """vllm-project/vllm#22072 (dev11 bad_flag 005, the vllm/vllm-openai image under docker compose): the title
    '[Bug]: "unrecognized arguments" error when attempting to "serve" a model' over the compose file, cut before
    the error line. argparse's words name a refused command line wherever they are quoted (no log in the dev corpus
    with them is anything else); vLLM's own "error: unrecognized arguments:" line is unchanged."""
    first = found(DEV11 / "bad_flag/005_docker_compose_serve_dtype_auto_one_list_item_unrecognized_arguments.log")[0]
    assert first.category == "invalid_argument" and first.severity == "error"
    assert categories_of(['I get the "unrecognized arguments" error in the docker logs']) == ["invalid_argument"]
    assert categories_of(["vllm: error: unrecognized arguments: --omni"]) == ["invalid_argument"]
    assert categories_of(["all arguments were recognized"]) == []


def test_an_exception_no_rule_knows_raised_while_parsing_the_command_line_is_invalid_argument() -> None:
    """From the dev half's misses beside dev11's: vllm-project/vllm#17944 (corpus/dev4 bad_flag 005, 0.8.5 dev)
    (`vllm serve --model mistralai/Mistral-7B-Instruct-v0.3`): a traceback main -> parse_args -> `raise ValueError(`
    ending "ValueError: With `vllm serve`, you should provide the model as a positional argument or in a config file
    instead of via the `--model` option." No rule knows the sentence; the frames say where it was raised: the
    argument parser, whose exceptions are the command line's fault. The same exception anywhere else stays
    unclassified, and a rule that explains an exception still names it first."""
    dev4 = LOGS / "corpus" / "dev4" / "bad_flag" / "005_pr_vllm_serve_model_option_valueerror.log"
    [finding] = found(dev4)
    assert finding.category == "invalid_argument" and "parsed its command line" in finding.title
    parsed = ["Traceback (most recent call last):",
              '  File "/opt/venv/bin/vllm", line 8, in <module>',
              "    sys.exit(main())",
              '  File "/opt/venv/lib/python3.12/site-packages/vllm/entrypoints/cli/main.py", line 48, in main',
              "    args = parser.parse_args()",
              '  File "/opt/venv/lib/python3.12/site-packages/vllm/utils.py", line 1391, in parse_args',
              "    raise ValueError(",
              "ValueError: some new check of the arguments"]
    assert categories_of(parsed) == ["invalid_argument"]
    assert categories_of([*parsed[:3], "ValueError: some new check of the arguments"]) == ["unclassified"]


def test_a_traceback_cut_under_v0s_init_cache_is_the_kv_cache_setup() -> None:
    """From the dev half's misses beside dev11's: vllm-project/vllm#3049 (corpus/dev5 profile_oom 040, 0.3.2): gemma-7b
    offline, a traceback LLM() -> from_engine_args -> __init__ -> _init_cache -> _run_workers("init_cache_engine")
    cut before its exception. V0 0.2-0.3 named the KV cache's set-up `_init_cache` (profiling memory, then sizing
    and allocating the cache), what later versions call initialize_kv_caches: the same weak phase, so the excerpt's
    start-up phase and vLLM's KV figures say which step failed (none printed here: the profiling run)."""
    [finding] = found(LOGS / "corpus" / "dev5" / "profile_oom" / "040_v032_gemma7b_offline_oom_init_cache_engine.log")
    assert finding.category == "profile_oom" and "KV cache" in finding.title


def test_an_http_client_error_for_a_media_files_url_is_media_fetch_error() -> None:
    """rayonlabs/nineteen#362 (dev11 media_fetch_error 018): "aiohttp.client_exceptions.ClientResponseError: 404,
    message='Not Found', url='http://localhost:8000/uploaded_images/sample.jpg'" over the chat completion answered
    500. An HTTP client's error status (aiohttp, requests, httpx) for a URL that names an image, video or audio file
    is a request's media that could not be fetched; the same error for an API route is not."""
    first = found(DEV11 / "media_fetch_error/018_nineteen_vl_image_url_404_aiohttp_client_response_error_500.log")[0]
    assert first.category == "media_fetch_error" and first.severity == "error"
    assert categories_of(["requests.exceptions.HTTPError: 403 Client Error: Forbidden for url: "
                          "https://example.com/photos/cat.png?size=large"]) == ["media_fetch_error"]
    assert "media_fetch_error" not in categories_of([
        "aiohttp.client_exceptions.ClientResponseError: 500, message='Internal Server Error', "
        "url='http://localhost:8000/v1/chat/completions'"])


def test_no_dev11_healthy_log_has_an_error_finding() -> None:
    """vllm-project/vllm#18634 (dev11 healthy 023: tokenizers' fork warning and c10d's TCPStore warnings over a
    working offline script), blog.huikang.dev's walk through a working server's start-up logs (024) and
    myoceane.fr's A100 deployment notes (025): alarming-looking lines and prose about KV cache, TTFT and memory, no
    failure."""
    for path in sorted((DEV11 / "healthy").glob("*.log")):
        assert not any(f.severity == "error" for f in found(path)), path.name
