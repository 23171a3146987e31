"""What a paste does to a log must not change what it says: real dev-half logs, hard-wrapped by a terminal,
double-spaced, indented as a whole, bulleted, quoted or framed by a terminal UI, are named as they are whole.

Each transformation is one users' pastes show in the corpus (tests/data/logs/*/index.json notes); the logs
are dev-half logs (collected/, public/, corpus/dev*: rules may be written from them), never the test half.
"""

from __future__ import annotations

import html
import io
import json
from collections.abc import Callable

import pytest

from qwenops.vllmlog.classify import CANDIDATE, Finding
from qwenops.vllmlog.lines import Shape, continues, normalise, read_log, shape_of, wrap_width
from tests.logcorpus import LOGS
from tests.logreaders import findings_of_both_readers

# Logs whose one message a terminal's wrap cut where the old joiner could not see the cut (before a digit, a
# colon, an exception's name), so that the wrapped paste was named otherwise or not at all.
WRAPPED = [
    "public/17_port_in_use.log",
    "collected/max_len_exceeds_kv/01_v0_qwen15_7b_7344.log",
    "collected/port_in_use/03_v0_ci_port_held_by_child.log",
    "collected/engine_stalled/02_v0_086_zero_throughput_one_running.log",
    "collected/high_latency/01_v0_preempted_recompute_cumulative_101.log",
    "corpus/a/insufficient_free_memory/004_torch211_ci_buildkite_cuda1_19p77_of_22.log",
    "corpus/b/engine_stalled/067_v05_tp2_first_allreduce_watchdog_600s.log",
]


def _wrap(width: int, *, trim: bool = False) -> Callable[[list[str]], list[str]]:
    def wrap(lines: list[str]) -> list[str]:
        out = []
        for line in lines:
            parts = [line[i:i + width] for i in range(0, len(line), width)] or [""]
            out += [part.rstrip() if trim else part for part in parts]
        return out
    return wrap


def _prefix(text: str) -> Callable[[list[str]], list[str]]:
    return lambda lines: [text + line for line in lines]


PASTES: dict[str, Callable[[list[str]], list[str]]] = {
    "wrapped at 80": _wrap(80),
    "wrapped at 80, trailing blanks trimmed": _wrap(80, trim=True),
    "compose tag, wrapped at 120": lambda lines: _wrap(120)(_prefix("vllm-openai-1  | ")(lines)),
    "wrapped at 100 and double-spaced": lambda lines: [x for line in _wrap(100)(lines) for x in (line, "")],
    "indented as a code block": _prefix("    "),
    "bulleted by a log viewer": _prefix("- 2024-06-22T20:16:34.700+00:00 "),
    "quoted": _prefix("> "),
    "framed by k9s": lambda lines: [f"\u2502 {line:<300} \u2502" for line in lines],
    "docker's json-file log": lambda lines: [json.dumps({"log": f"{line}\n", "stream": "stderr",
                                                         "time": "2024-06-22T20:16:34.700123456Z"}) for line in lines],
    "HTML-escaped by a web page": lambda lines: [html.escape(line) for line in lines],
    "behind Go's timestamp": _prefix("2024/06/22 20:16:34 "),
    "behind Python logging's prefix": _prefix("2024-06-22 20:16:34,123 - vllm.server - INFO - "),
    "behind FastChat's prefix": _prefix("2024-04-17 10:33:56 | ERROR | stderr | "),
    "behind journalctl -o short-iso": _prefix("2024-11-28T07:00:00+0000 gpu-1 vllm[4242]: "),
    "behind journalctl -o short-precise": _prefix("Nov 28 07:00:00.123456 gpu-1 vllm[4242]: "),
    "read from a CRI log file": _prefix("2024-11-28T07:00:00.123456789Z stderr F "),
    "behind kubectl logs --prefix": _prefix("[pod/vllm-7d9f-x2/vllm] "),
    "behind a Ray Serve replica's tag": _prefix("(ServeReplica:default:VLLMDeployment pid=4242, ip=10.0.0.2) "),
    "coloured tags whose ESC a paste dropped": _prefix("[36m(RayWorkerWrapper pid=4242, ip=10.0.0.2)[0m "),
    "behind mpirun's one-index tag": _prefix("[1]<stderr>: "),
    "with tqdm's redraws before every line": lambda lines: [
        f"Processed prompts:  50%|#####     | 8/16 [00:01<00:01,  4.2it/s]\r{line}" for line in lines],
}


def _findings(text: str) -> list[Finding]:
    """What both readers find (every line, and the block scanner the CLI uses): they must agree."""
    return findings_of_both_readers(text)


def _named(findings: list[Finding]) -> tuple[str | None, bool]:
    return (findings[0].category if findings else None), any(f.severity == "error" for f in findings)


@pytest.mark.parametrize("paste", list(PASTES))
@pytest.mark.parametrize("name", WRAPPED)
def test_a_pasted_log_is_named_as_the_whole_one(name: str, paste: str) -> None:
    lines = (LOGS / name).read_text(encoding="utf-8").splitlines()
    whole = _named(_findings("\n".join(lines) + "\n"))
    assert whole[0] is not None
    assert _named(_findings("\n".join(PASTES[paste](lines)) + "\n")) == whole


def test_the_terminals_width_is_where_many_lines_end_and_none_goes_past() -> None:
    """corpus/a/max_len_exceeds_kv/005 (SergiioB/intel-arc-pro-b70-inference-cookbook#4, wrapped at 119
    columns) and corpus/b/incoherent_output/054 (vllm-project/vllm#2255, wrapped at 80): the width is found;
    vLLM's throughput lines, all alike long and each followed by the next record (collected/healthy/05,
    vllm-project/vllm#6689), show none."""
    for name, width in (("corpus/a/max_len_exceeds_kv/005_arc_b70_100000_needs_4p26_has_4p25_wrapped.log", 119),
                        ("corpus/b/incoherent_output/054_v02_chatglm2_tp4_garbled_digits.log", 80)):
        assert shape_of((LOGS / name).read_text(encoding="utf-8").splitlines()).width == width
    alike = (LOGS / "collected/healthy/05_v0_idle_metrics_zero_running.log").read_text(encoding="utf-8")
    assert wrap_width(alike.splitlines()) is None
    # At the width, a cut before a digit, a colon or an exception's name is still a cut; a new record is not.
    line = "x" * 79 + "y"
    assert continues(line, "ntimeError: CUDA error: out of memory", 80)
    assert continues(line, "eration throughput: 0.0 tokens/s, Running: 27 reqs", 80)
    assert not continues(line, "INFO 08-29 02:12:02 metrics.py:406] Avg prompt throughput", 80)
    assert not continues(line, "x", 80, raw="(VllmWorker rank=0 pid=12) x")


def test_a_paste_indented_as_a_whole_loses_the_indent_all_its_lines_share() -> None:
    """corpus/dev3/engine_stalled/019 (vllm-project/vllm#41530: a TP8 worker's traceback pasted two spaces in):
    the shared indent is measured; a traceback's own indentation under it stays."""
    lines = (LOGS / "corpus/dev3/engine_stalled/019_v1_tp8_worker_hang_shm_dequeue_timeout_padded.log").read_text(
        encoding="utf-8").splitlines()
    shape = shape_of(lines)
    assert shape.indent == "  "
    assert shape.dedent('    File "x.py", line 1, in f') == '  File "x.py", line 1, in f'
    assert Shape().dedent("  x") == "  x"


def test_a_double_spaced_paste_joins_a_wrapped_line_across_its_blank() -> None:
    """corpus/a/weights_oom/009 (vllm-project/vllm#31273: a blank line after every line) is double-spaced; a
    line wrapped in such a paste has its parts a blank line apart."""
    lines = (LOGS / "corpus/a/weights_oom/009_v013_h20_qwen25_72b_fp8_weight_load_regression_double_spaced.log"
             ).read_text(encoding="utf-8").splitlines()
    assert shape_of(lines).double
    head = "ERROR 05-29 16:28:43 [scheduler.py:245] Input prompt (9040 tokens) is too long and exc"
    text = "\n\n".join((head, "eeds limit of 4000", "INFO 05-29 16:28:44 [loggers.py:1] next", ""))
    assert next(line.text for line in read_log(io.BytesIO(text.encode())) if line.text).endswith(
        "too long and exceeds limit of 4000")


def test_a_terminal_uis_frame_is_not_part_of_the_line() -> None:
    """corpus/dev3/healthy/026 (kubernetes-sigs/gateway-api-inference-extension#550: a vLLM pod's start-up
    copied from k9s, `│ ` before and padding and ` │` after
    every line): the lines read as vLLM wrote them, and the padding is no terminal width."""
    path = LOGS / "corpus/dev3/healthy/026_k8s_k9s_framed_v08_memory_profiling.log"
    with path.open("rb") as stream:
        texts = [line.text for line in read_log(stream)]
    assert texts[0].startswith("INFO 03-21 20:15:44 [monitor.py:33]") and not texts[0].endswith("\u2502")
    assert shape_of(path.read_text(encoding="utf-8").splitlines()).width is None


def test_a_log_viewers_bullet_and_a_quotes_bare_marker_are_wrappers() -> None:
    """corpus/a/runtime_oom/010 and corpus/b/engine_dead/029 (vllm-project/vllm#5060: a cloud log viewer's
    `- ` bullet before its timestamp); a `>` alone quotes an empty line."""
    path = LOGS / "corpus/b/engine_dead/029_v05_async_engine_loop_wait_for_cloud_timestamps.log"
    with path.open("rb") as stream:
        first = next(iter(read_log(stream))).text
    assert first.startswith("ERROR 06-22 20:16:34 async_llm_engine.py:52]")
    assert [line.text for line in read_log(io.BytesIO(b">\n>   TimeoutError\n"))] == ["", "  TimeoutError"]


@pytest.mark.parametrize(("server", "cause"), [
    ("public/23_engine_dead.log", "engine_dead"),
    ("corpus/dev2/profile_oom/013_v07_mllama_enc_dec_profile_run_cut.log", "profile_oom"),
])
def test_a_server_log_and_a_clients_pasted_together_name_the_servers_failure_first(server: str, cause: str) -> None:
    """Two sources in one paste: a server's log (public/23, vllm-project/vllm; dev2 013, a profile run's traceback
    cut before its error) and a client's cut stream (corpus/b stream_interrupted 042, an h11 "incomplete chunked
    read" from a llama-index client). The client saw the server's failure: both are named, the server's first,
    and a client's cut traceback does not hide the server's."""
    text = (LOGS / server).read_text(encoding="utf-8") + "\n" + (
        LOGS / "corpus/b/stream_interrupted/042_llamaindex_openailike_h11_incomplete_chunked.log").read_text(
        encoding="utf-8")
    errors = [f.category for f in _findings(text) if f.severity == "error"]
    assert errors[0] == cause and "stream_interrupted" in errors


def test_a_progress_bars_debris_is_not_part_of_the_record() -> None:
    """tqdm redraws its bar with carriage returns and writes no newline before the next record, so a captured log
    holds lines like these (the offline engine's "Processed prompts" bar of corpus/dev3/engine_stalled/045,
    vllm-project/vllm#9920): the record reads as vLLM wrote it, and a line of redraws alone is its last redraw."""
    bar = "Processed prompts:  50%|#####     | 8/16 [00:01<00:01,  4.2it/s]"
    record = "ERROR 03-20 02:29:07 [core.py:340] RuntimeError: CUDA error: an illegal memory access was encountered"
    assert normalise(f"{bar}\r{record}") == record
    assert normalise(f"{record}\r{bar}") == record
    assert normalise(f"{bar}{record}") == record
    assert normalise(f"{bar}\r{bar.replace('50%', '100%')}") == bar.replace("50%", "100%")
    not_a_bar = "GPU KV cache usage: 50% | [note] INFO is not a bar"
    assert normalise(not_a_bar) == not_a_bar


def test_a_pastes_shape_is_measured_on_its_first_lines_only() -> None:
    """Hostile input stays cheap: a first block of a million empty lines is measured on its first lines (it has no
    shape), and the offline engine's bar is a candidate only at 0% and at 100% (its redraws between are not)."""
    from qwenops.vllmlog.lines import block_shape

    assert block_shape(b"\n" * 1_000_000) == Shape()
    assert not CANDIDATE.search(b"Processed prompts:  50%|#####     | 8/16 [00:01<00:01,  4.2it/s]")
    assert CANDIDATE.search(b"Processed prompts:   0%|          | 0/16 [00:00<?, ?it/s]")


def test_a_pastes_last_line_without_its_newline_is_read_alike_by_both_readers() -> None:
    """A paste's last line often has no newline. The block scanner read it alone, after the block (not joined to the
    line a terminal cut it from, and the paste's shape measured without it), while reading every line joined it: the
    two readers gave different evidence and counts (found by probing wordings, not from a log)."""
    cut = ("huggingface_hub.errors.RepositoryNotFoundError: 404 Client Error. (Request ID: Root=1-abc)\n"
           "Repository Not Found for url: https://huggingface.co/api/models/Qwen/Qwen3-14b-AWQ/revision/main.")
    for text in (cut, cut + "\n"):
        [finding] = _findings(text)  # both readers agree (findings_of_both_readers checks)
        assert finding.category == "model_not_found" and "Repository Not Found" in finding.evidence[0].quote


def test_what_a_paste_wraps_a_line_in_goes_whatever_the_line_holds() -> None:
    """Audit 10, F3: the patterns that took these off searched from every blank of a long run (`\\s*[repeated ...]`,
    `\\s+│$`) and cost the square of the line; they are now taken off by position. Still taken off alike."""
    from qwenops.vllmlog.lines import normalise

    assert normalise("ERROR x   [repeated 30x across cluster]  ") == "ERROR x"
    assert normalise("\u2502 ERROR x" + " " * 50 + "\u2502") == "ERROR x"
    assert normalise("\u2502 ERROR x\u2502") == "ERROR x\u2502"  # no padding before it: not a frame's edge
    assert normalise(" " * 3000 + "\u2502").strip() == ""
