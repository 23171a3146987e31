"""The classifier's rules written from corpus/dev8 (and the dev logs of the same shapes), each test citing its log
and the public thread it came from. None of these logs is in the frozen test half (tests/logcorpus.py), which no
test reads. Each rule reads a structure (a traceback's frames and the phase reached, a benchmark's figures, the
writing systems of an answer's lines, the reporter's own words where the log names nothing), not one log's wording.
Every text is read by both of troubleshoot's readers, which must agree."""

from __future__ import annotations

from pathlib import Path

from qwenops.troubleshoot.run import classify_source
from qwenops.troubleshoot.sources import file_source
from tests.logcorpus import LOGS
from tests.logreaders import categories, findings_of_both_readers, found

CORPUS = LOGS / "corpus"
DEV8 = CORPUS / "dev8"
_FRAMES_TO_KV_SETUP = [
    "Traceback (most recent call last):",
    '  File "/opt/venv/lib/python3.12/site-packages/vllm/entrypoints/llm.py", line 242, in __init__',
    "    self.llm_engine = self.engine_class.from_engine_args(",
    '  File "/opt/venv/lib/python3.12/site-packages/vllm/engine/llm_engine.py", line 276, in __init__',
    "    self._initialize_kv_caches()",
    '  File "/opt/venv/lib/python3.12/site-packages/vllm/engine/llm_engine.py", line 421, in _initialize_kv_caches',
]


def test_a_traceback_cut_at_the_engines_kv_cache_set_up_is_placed_by_the_phase_and_the_kv_figures() -> None:
    """vllm-project/llm-compressor#1234 (dev8 profile_oom 001, V0 0.7.3): "Starting profile run for multi-modal
    models", then a traceback through LLMEngine._initialize_kv_caches, cut before its exception. The engine's KV-cache
    set-up profiles memory, then sizes the cache (and in V1 captures graphs under it): with no deeper frame, the phase
    reached and vLLM's KV figures say which step failed. Before any KV figure: the profiling run (its OOM is the
    common failure); "0 blocks" printed: no room for the cache; graphs being captured: their OOM."""
    [finding] = found(DEV8 / "profile_oom/001_v073_whisper_gptq_offline_llm_enc_dec_profile_run_traceback_cut.log")
    assert finding.category == "profile_oom" and "KV cache" in finding.title
    for prefix in ("", "[rank0]: ", "vllm-1  | "):
        profiling = ["INFO 03-07 10:42:36 enc_dec_model_runner.py:280] Starting profile run for multi-modal models.",
                     *_FRAMES_TO_KV_SETUP]
        assert categories_of([prefix + line for line in profiling]) == ["profile_oom"], prefix
    no_blocks = ["INFO 11-18 18:07:28 gpu_executor.py:122] # GPU blocks: 0, # CPU blocks: 2048", *_FRAMES_TO_KV_SETUP]
    assert categories_of(no_blocks) == ["kv_cache_no_blocks"]
    capturing = ["INFO 08-19 07:51:12 model_runner.py:1024] Capturing the model for CUDA graphs.",
                 *_FRAMES_TO_KV_SETUP]
    assert categories_of(capturing) == ["cudagraph_oom"]
    # An OOM whose frames stop at the set-up is the profiling run's too; a deeper frame still names its own step.
    oom = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB."
    assert categories_of([*_FRAMES_TO_KV_SETUP, oom])[0] == "profile_oom"
    capture = '  File "/opt/venv/lib/python3.12/site-packages/vllm/worker/model_runner.py", line 1500, in capture_model'
    assert categories_of([*_FRAMES_TO_KV_SETUP, capture, oom])[0] == "cudagraph_oom"


def categories_of(lines: list[str]) -> list[str]:
    return [f.category for f in findings_of_both_readers("\n".join(lines))]


def test_an_oom_in_the_reporters_words_is_placed_at_the_step_they_name_or_the_later_one_the_log_reached() -> None:
    """vllm-project/vllm-omni#2721 (dev8 weights_oom 007): the issue title "... Model loading out of memory" over a
    buildkite traceback cut at its first frame; vllm-project/vllm#14092 (dev8 006): "raise Exception in worker
    VllmWorkerProcess while processing method load_model that torch.OutOfMemoryError". Where the log's own error line
    is missing, the reporter's words name the OOM and the step (loading, profiling, graph capture, serving); the
    log's phase lines win when they reached a later step ("loading" said of the whole start-up: dev5 profile_oom 031
    says "OOM errors are thrown after ... Starting profile run"). vLLM's own hint lines, a conditional or a denied
    OOM, and an OOM that no step places are no report; a real error in the log beats the words."""
    assert categories(DEV8 / "weights_oom/007_vllm_omni_ci_l4_dynin_omni_model_loading_oom_traceback_cut.log") == [
        "weights_oom"]
    assert categories(DEV8 / "weights_oom/006_deepseek_r1_70b_tp8_load_model_worker_oom_prose.log")[0] == "weights_oom"
    assert categories(CORPUS / "dev5/profile_oom/031_v063_mllama_11b_vision_oom_after_mm_profile_run.log")[0] == \
        "profile_oom"
    assert categories_of(["[Bug]: OOM when loading the model on 2x A10"]) == ["weights_oom"]
    assert categories_of(["Out of memory during CUDA graph capture with Qwen3-32B"]) == ["cudagraph_oom"]
    assert categories_of(["it goes OOM under 64 concurrent requests"]) == ["runtime_oom"]
    after_profiling = ["OOM while loading the model",
                       "INFO 05-16 18:43:01 [gpu_model_runner.py:1186] Model loading took 14.2487 GB and 2.77 seconds"]
    assert categories_of(after_profiling) == ["profile_oom"]
    assert categories_of(["Does it OOM? I got an error"]) == []  # no step and no phase line: not placed
    assert categories_of(["If it goes out of memory while loading the model, lower it"]) == []
    assert categories_of(["There is no OOM when loading the model, it just hangs"]) == ["engine_stalled"]
    hint = ("INFO 08-19 07:51:12 model_runner.py:1028] CUDA graphs can take additional 1~3 GiB memory per GPU. If "
            "you are running out of memory, consider decreasing `gpu_memory_utilization` or enforcing eager mode.")
    assert categories_of([hint]) == []
    real = ["OOM while loading the model", "ValueError: No available memory for the cache blocks. Try increasing "
            "`gpu_memory_utilization` when initializing the engine."]
    assert categories_of(real)[0] == "kv_cache_no_blocks"


def test_a_hang_or_a_garbled_answer_in_the_reporters_words_is_named_only_where_the_log_names_nothing() -> None:
    """vllm-project/vllm#7913 (dev8 engine_stalled 012): "Server runs fine for the first 100 or so requests and then
    randomly hangs without any error message" over a log with nothing wrong in it; vllm-project/vllm#1206 (014): the
    same in Chinese (卡住); vllm-project/vllm#24038 (dev8 017: "produces endless repeating special characters") and
    QwenLM/Qwen3#1090 (019: "output repeat !!!!"). Where the log names no cause, the symptom the reporter describes
    is named as a warning (never an error: a healthy log's question stays without error findings); any finding of
    the log's own comes instead."""
    assert categories(DEV8 / "engine_stalled/012_v05x_command_r_hangs_after_100_requests_pending_11_no_error.log") \
        == ["engine_stalled"]
    [finding] = found(DEV8 / "engine_stalled/014_v01x_kv_cache_100_percent_then_stuck_gpu_idle_title_prose.log")
    assert finding.category == "engine_stalled" and finding.severity == "warning"
    for name in ("017_v0101_docker_command_a_awq_long_chat_repeating_glyphs.log",
                 "019_v063_qwen25_32b_awq_tp2_l20_output_repeat_exclamations.log"):
        assert categories(DEV8 / "incoherent_output" / name) == ["incoherent_output"], name
    both = ["The output is garbled after a while", "and then the server hangs"]
    assert categories_of(both) == ["incoherent_output", "engine_stalled"]  # the one said first, first
    # the log's own evidence comes instead of the words
    dead = ["the server hangs after a while",
            "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue."]
    assert categories_of(dead) == ["engine_dead"]
    # vLLM's own log lines are not the reporter's words
    assert categories_of(["INFO 02-05 04:53:21 [core.py:1] the engine is not stuck"]) == []
    # the same for slow answers (dev6 high_latency 027: "a total slowdown in outputs") and an answer that does not
    # stop (dev7 runaway_generation 026: "it will not stop until max_model_length"; troubleshoot names that
    # unclassified, as it does a pasted runaway answer)
    assert categories(CORPUS / "dev6/high_latency/027_v032_4090_mistral7b_upgrade_15_tok_s_vs_273_custom_allreduce.log"
                      ) == ["high_latency"]
    assert categories(CORPUS / "dev7/runaway_generation/026_v050_internlm2_chat_7b_openai_server_never_stops_until_"
                               "max_len.log") == ["unclassified"]
    assert categories_of(["推理速度很慢"]) == ["high_latency"]
    assert categories_of(["the stream never ends"]) == ["unclassified"]
    # in Chinese, an OOM and its step: loading the model (加载模型), inference (推理); a denied one is no report
    assert categories_of(["加载模型时显存不足"]) == ["weights_oom"]
    assert categories_of(["推理时爆显存"]) == ["runtime_oom"]
    assert categories_of(["加载模型没有显存不足的问题"]) == []


def test_token_salad_spread_over_an_answers_lines() -> None:
    """vllm-project/vllm#9183 (dev8 incoherent_output 018, Qwen2.5-Math-7B): the answer is token salad over many
    short lines: one line mixes Latin, Han and Arabic, another is Cyrillic, the rest Latin and Han. No line shows
    four scripts and only one mixes three families; the answer as a whole shows four. A line mixing three families
    with letters of four writing systems across the pasted lines is salad; a Chinese question with a Russian name
    (three scripts) is not."""
    assert categories(DEV8 / "incoherent_output/018_v06x_qwen25_math_7b_instruct_token_salad_markdown.log") == [
        "incoherent_output"]
    arabic = "\u0627\u0644\u0623\u0639\u0645\u0627\u0644"
    salad = ["listen disappe(proxyebx NPCsARRANTangered*/) Serif witty }", f" inhab {arabic}遊afi swebx cdr#+ sw SEEK",
             "该游戏 star Leone SEEK", "лось |"]
    assert categories_of(salad) == ["incoherent_output"]
    question = ["请问 Tolstoy 的小说 Война и мир 讲了什么\uff1f", "It is a novel about Russian society."]
    assert categories_of(question) == []


def test_a_benchmark_that_ran_far_longer_than_its_requests_took_to_arrive(tmp_path: Path) -> None:
    """vllm-project/vllm-ascend#3112 (dev8 high_latency 021, Qwen3-8B on a 910B4): `vllm bench serve` at 10
    requests/s for 200 prompts (they arrive in 20 s) ran 8206 s; the paste ends before the TTFT rows. A run
    BENCH_SLOWER times longer than its arrivals (and a minute at least) had its requests wait or answer slowly:
    high latency, a warning. A run about as long as its arrivals, an unbounded rate (inf), or a short run is not."""
    assert categories(DEV8 / "high_latency/021_ascend_910b4_qwen3_8b_vllm_bench_serve_rate_10_ttft_over_an_hour.log") \
        == ["high_latency"]

    def summary(done: int, rate: str, took: float, throughput: float) -> list[str]:
        return ["============ Serving Benchmark Result ============", f"Successful requests:        {done}",
                f"Request rate configured (RPS):     {rate}", f"Benchmark duration (s):     {took}",
                f"Total input tokens:      {done * 1000}", f"Request throughput (req/s):      {throughput}"]

    [finding] = findings_of_both_readers("\n".join(summary(200, "10.00", 8206.37, 0.02)))
    assert finding.category == "high_latency" and finding.severity == "warning" and "8206 s" in finding.fix
    assert categories_of(summary(1000, "12.00", 172.44, 5.80)) == []  # 83 s of arrivals, 172 s run: no queue
    assert categories_of(summary(1000, "inf", 172.44, 5.80)) == []
    assert categories_of(summary(10, "1.00", 45.0, 0.22)) == []  # under a minute
    # vLLM's older benchmark prints the rate before the run; its figures count the same; a docker prefix too
    older = ["Traffic request rate: 2.0", *[line for line in summary(100, "x", 900.5, 0.11) if "RPS" not in line]]
    assert categories_of(["vllm-bench-1  | " + line for line in older]) == ["high_latency"]
    # the big-log scanner finds it past the first megabyte, as the every-line reader does
    log = tmp_path / "big.log"
    filler = "(APIServer pid=1) INFO:     127.0.0.1:40001 - \"GET /metrics HTTP/1.1\" 200 OK\n" * 20000
    log.write_text(filler + "\n".join(summary(200, "10.00", 8206.37, 0.02)) + "\n", encoding="utf-8")
    assert log.stat().st_size > 1 << 20
    findings, _ = classify_source(file_source(str(log)), {})
    assert [f.category for f in findings] == ["high_latency"]


def test_the_healthy_dev8_logs_have_no_error_findings() -> None:
    """vllm-project/vllm#6206 (dev8 healthy 026: a throughput line and a question) and noonghunna/club-3090#747
    (027: a start-up with the generation-config warning and the route list): hard negatives stay quiet."""
    for path in sorted((DEV8 / "healthy").glob("*.log")):
        assert not [f for f in found(path) if f.severity == "error"], path.name
