"""The classifier's rules written from corpus/dev15 (scored fresh first: 13 of 18 named right before any rule), each
test citing its log and the public thread it came from. None of these logs is in the frozen test half
(tests/logcorpus.py), which no test reads. The rules read structure (Python's exception chains), the words of the
tools that failed (Triton, nvcc and ninja, curl, Node) and the shape of a request path, never one log's sentence.
Every text is read by both of troubleshoot's readers, which must agree."""

from __future__ import annotations

import subprocess
import sys

from tests.logcorpus import LOGS
from tests.logreaders import findings_of_both_readers, found

DEV15 = LOGS / "corpus" / "dev15"


def named(lines: list[str]) -> list[tuple[str, str]]:
    return [(f.category, f.severity) for f in findings_of_both_readers("\n".join(lines))]


def test_a_later_link_of_an_exception_chain_is_the_same_failure_as_the_one_above_it() -> None:
    """OpenManus (dev15 request_too_long 017, FoundationAgents/OpenManus#840): the client's openai.BadRequestError
    (400, maximum context length) and, under Python's "The above exception was the direct cause of the following
    exception:", the script's own traceback, cut before its exception line. That cut link is the same failure: it
    was reported first, as an unexplained error, above the 400 that explains it."""
    findings = found(DEV15 / "request_too_long" / "017_openmanus_qwq32b_max_len_10000_requested_10515_with_8192_"
                     "completion.log")
    assert [f.category for f in findings] == ["request_too_long"]
    cause = ["Traceback (most recent call last):",
             '  File "/app/client.py", line 10, in ask',
             "openai.BadRequestError: Error code: 400 - {'object': 'error', 'message': \"This model's maximum context "
             "length is 4096 tokens. However, you requested 5000 tokens (904 in the messages, 4096 in the "
             "completion).\"}"]
    for header in ("The above exception was the direct cause of the following exception:",
                   "During handling of the above exception, another exception occurred:"):
        chained = [*cause, "", header, "", "Traceback (most recent call last):",
                   '  File "/app/main.py", line 27, in <module>', "    asyncio.run(main())"]
        assert named(chained) == [("request_too_long", "warning")], header
    # without the chain header, a second traceback cut short is another failure, still reported
    unchained = [*cause, "", "Traceback (most recent call last):", '  File "/app/main.py", line 27, in <module>',
                 "    asyncio.run(main())"]
    assert ("unclassified", "error") in named(unchained)


def test_triton_refusing_fp8_is_a_gpu_without_fp8() -> None:
    """vllm-project/vllm#17581 (dev15 unsupported_dtype 004): Qwen3's FP8 checkpoint on 0.8.5; Triton's "type
    fp8e4nv not supported in this architecture" (in the title; the traceback is cut at "Worker failed with error
    'at 1:0:"). FP8 needs compute capability 8.9: the fix is a checkpoint the GPU runs, not a dtype flag."""
    [first, *_] = found(DEV15 / "unsupported_dtype" / "004_v085_qwen3_fp8_triton_fp8e4nv_not_supported_in_this_"
                        "architecture.log")
    assert first.category == "unsupported_dtype" and first.severity == "error" and "AWQ" in first.fix
    for line in ("AssertionError: type fp8e4nv not supported in this architecture. The supported fp8 dtypes are "
                 "('fp8e4b15', 'fp8e5')",
                 "(VllmWorker rank=0 pid=374) ERROR 05-02 10:22:18 [multiproc_executor.py:470] triton.compiler.errors."
                 "CompilationError: at 1:0: ... fp8e4nv data type is not supported on CUDA arch < 89"):
        assert named([line])[0] == ("unsupported_dtype", "error"), line


def test_a_malformed_request_path_is_the_clients_base_url() -> None:
    """open-webui/open-webui#12117 (dev15 client_config 006): OPENAI_API_BASE_URL ends in "/v1/", so vLLM logs
    "GET /v1//models HTTP/1.1" 404 and the model list stays empty. A doubled slash or a second /v1 in a path is a
    base URL's mistake, in an access line, a client's error or the reporter's words; a plain 404 is not."""
    [finding] = found(DEV15 / "client_config" / "006_open_webui_base_url_trailing_slash_get_v1_double_slash_"
                      "models_404.log")
    assert finding.category == "unclassified" and "without a trailing slash" in finding.fix
    for line in ('INFO:     127.0.0.1:50762 - "GET /v1//models HTTP/1.1" 404 Not Found',
                 'INFO:     10.0.0.5:41234 - "POST /v1/v1/chat/completions HTTP/1.1" 404 Not Found',
                 "httpx.HTTPStatusError: Client error '404 Not Found' for url 'http://localhost:8000//v1/chat/"
                 "completions'"):
        [(category, _)] = named([line])
        assert category == "unclassified", line
        assert "without a trailing slash" in findings_of_both_readers(line)[0].fix
    # a 404 that shows the doubled path is the base URL's, first; a 404 alone is a model or route not served
    both = findings_of_both_readers("openai.NotFoundError: Error code: 404 - {'detail': 'Not Found'} "
                                    "(POST http://localhost:8000/v1/v1/chat/completions)")
    assert "without a trailing slash" in both[0].fix
    assert "without a trailing slash" not in findings_of_both_readers(
        "openai.NotFoundError: Error code: 404 - {'detail': 'Not Found'}")[0].fix
    # a scheme's // and a healthy path are not it
    assert named(['INFO:     127.0.0.1:50762 - "GET /v1/models HTTP/1.1" 200 OK',
                  "client base_url=http://models.internal:8000/v1"]) == []


def test_curl_and_node_refused_connections_are_a_client_that_cannot_connect() -> None:
    """QwenLM/Qwen3#1392 (dev15 client_config 008): vllm serve was up, but curl from WSL said "curl: (7) Failed to
    connect to 127.0.0.1 port 6066 after 0 ms: Connection refused"; the fix was WSL's networking. curl's and Node's
    own words for a refused connection are a client that never reached a server (it was "no error found")."""
    [finding] = found(DEV15 / "client_config" / "008_qwen3_4b_wsl_vllm_serve_up_curl_connection_refused.log")
    assert finding.category == "unclassified" and "base URL" in finding.fix
    for line in ("curl: (7) Failed to connect to localhost port 8000: Connection refused",
                 "curl: (7) Couldn't connect to server",
                 "Error: connect ECONNREFUSED 127.0.0.1:8000"):
        assert named([line]) == [("unclassified", "warning")], line


def test_a_kernel_that_failed_to_compile_at_start_up_is_named_before_the_engines_death() -> None:
    """vllm-project/vllm#23176 (dev15 broken_install 001): a local build whose FlashInfer sampler is compiled with
    nvcc at start-up; the engine core's ERROR holds the nvcc command, then "Engine core initialization failed". It
    was profile_oom (a guess from the cut sampler frames). A failed kernel build is a toolchain problem, and an
    unexplained-cause finding of its own stays an error (it was demoted to a note by itself)."""
    findings = found(DEV15 / "broken_install" / "001_v010dev_local_build_flashinfer_jit_sampling_nvcc_engine_core_"
                     "init_failed.log")
    assert [(f.category, f.severity) for f in findings] == [("unclassified", "error"), ("engine_dead", "info")]
    assert "nvcc" in findings[0].fix
    for line in ("ninja: build stopped: subcommand failed.",
                 "RuntimeError: Error building extension 'sampling'",
                 "FAILED: sampling/renorm.cuda.o",
                 "error: command '/usr/local/cuda/bin/nvcc' failed with exit code 1"):
        assert named([line])[0] == ("unclassified", "error"), line
    # the compiler's command on an INFO line is a build that may well succeed
    assert named(["INFO 08-19 13:12:00 [jit.py:10] /usr/bin/nvcc -O3 -c /tmp/renorm.cu -o renorm.o"]) == []


def test_the_scanners_automaton_fits_re2s_budget() -> None:
    """The scanner is one RE2 alternation of every rule's words; under RE2's default 8 MiB its DFA ran out of memory
    on ordinary logs (one more rule tipped it), printed "DFA out of memory" to troubleshoot's stderr once per block
    and fell back to RE2's slow NFA. Read every dev15 log in a fresh process: RE2 says nothing."""
    script = ("import sys\n"
              "from qwenops.troubleshoot.run import classify_source\n"
              "from qwenops.troubleshoot.sources import file_source\n"
              "for path in sys.argv[1:]:\n"
              "    classify_source(file_source(path), {})\n")
    logs = sorted(str(path) for path in DEV15.rglob("*.log"))
    done = subprocess.run([sys.executable, "-c", script, *logs], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "DFA out of memory" not in done.stderr and "re2" not in done.stderr.lower(), done.stderr[:500]
