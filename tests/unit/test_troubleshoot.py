"""`qwenops troubleshoot`: real logs named right (as written, and as journald, compose or docker wrap them),
the contract, and bad input of every kind as one line with its exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qwenops.cli import cli
from qwenops.vllmlog.classify import classify_text
from qwenops.vllmlog.lines import MAX_LINE_CHARS, normalise, read_log
from tests.conftest import REPO

LOGS = REPO / "tests" / "data" / "logs"
PUBLIC = LOGS / "public"
INDEX = json.loads((PUBLIC / "index.json").read_text())
# Excerpts whose deciding line is cut off (index.json notes): named by what the excerpt does show.
EXCERPT_SHOWS = {"15_runtime_oom.log": "engine_dead"}
CPU_LOGS = {  # recorded on the CPU engine (tests/data/logs/README.md)
    "vllm_cpu_port_in_use.log": "port_in_use",
    "vllm_cpu_model_missing.log": "model_not_found",
    "vllm_cpu_bad_flag.log": "invalid_config",
    "vllm_cpu_engine_killed.log": "engine_dead",
    "vllm_cpu_max_len_exceeds_kv.log": "max_len_exceeds_kv",
    "vllm_cpu_boot.log": None,
}


def troubleshoot(*args: str, stdin: bytes | None = None) -> tuple[int, dict[str, Any], str]:
    result = CliRunner().invoke(cli, ["troubleshoot", *args, "--json"], input=stdin, catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout), result.stderr


def expected(entry: dict[str, str]) -> str | None:
    if entry["category"] == "healthy":
        return None
    return EXCERPT_SHOWS.get(entry["file"], entry["category"])


@pytest.mark.parametrize("entry", INDEX, ids=lambda e: e["file"])
def test_every_public_log_is_named_right_with_a_fix(entry: dict[str, str]) -> None:
    code, doc, _ = troubleshoot("--log", str(PUBLIC / entry["file"]))
    findings = doc["data"]["findings"]
    errors = [f for f in findings if f["severity"] == "error"]
    want = expected(entry)
    if want is None:
        assert (code, errors) == (0, [])
        return
    first = findings[0]
    assert first["category"] == want, [f["category"] for f in findings]
    assert first["fix"] and first["evidence"][0]["quote"]
    assert first["evidence"][0]["source"].startswith(f"log {PUBLIC / entry['file']} line ")
    # A request refused for its length is the client's problem: the server kept serving.
    assert code == (0 if first["severity"] != "error" else 1)


@pytest.mark.parametrize(("name", "category"), CPU_LOGS.items())
def test_recorded_cpu_engine_logs(name: str, category: str | None) -> None:
    code, doc, _ = troubleshoot("--log", str(LOGS / name))
    errors = [f["category"] for f in doc["data"]["findings"] if f["severity"] == "error"]
    assert errors[:1] == ([category] if category else [])
    assert code == (1 if category else 0)


def test_the_reproduced_max_len_failure_gets_vllms_own_number() -> None:
    _, doc, _ = troubleshoot("--log", str(LOGS / "vllm_cpu_max_len_exceeds_kv.log"), "--profile", "4090d")
    assert "lower max_model_len from 2048 to 1792 (`--set max_model_len=1792`)" in doc["data"]["findings"][0]["fix"]
    _, doc, _ = troubleshoot("--log", str(LOGS / "vllm_cpu_max_len_exceeds_kv.log"), "--profile", "cpu-tiny")
    # cpu-tiny's 512 is below vLLM's estimate already: no "from 512" that would raise it.
    assert "lower max_model_len to 1792 (`--set max_model_len=1792`)" in doc["data"]["findings"][0]["fix"]


def wrap(line: str, how: str, number: int) -> str:
    return {
        "journald": f"Nov 28 07:00:{number % 60:02d} gpu-box qwenops[4242]: {line}",
        "compose": f"vllm-1  | {line}",
        "docker -t": f"2026-11-28T07:00:{number % 60:02d}.123456789Z {line}",
        "ansi+crlf": f"\x1b[1;31m{line}\x1b[0m\r",
        "ray": f"{line} [repeated 30x across cluster]" if line else line,
    }[how]


@pytest.mark.parametrize("how", ["journald", "compose", "docker -t", "ansi+crlf", "ray"])
@pytest.mark.parametrize("entry", INDEX, ids=lambda e: e["file"])
def test_wrapped_logs_are_named_the_same(entry: dict[str, str], how: str, tmp_path: Path) -> None:
    lines = (PUBLIC / entry["file"]).read_text().splitlines()
    wrapped = tmp_path / "wrapped.log"
    wrapped.write_text("\n".join(wrap(line, how, n) for n, line in enumerate(lines)) + "\n")
    _, plain, _ = troubleshoot("--log", str(PUBLIC / entry["file"]))
    _, seen, _ = troubleshoot("--log", str(wrapped))
    assert [f["category"] for f in seen["data"]["findings"]] == [f["category"] for f in plain["data"]["findings"]]


@pytest.mark.parametrize(("raw", "clean"), [
    ("(APIServer pid=1) INFO 11-28 07:00:00 [api_server.py:1] x", "INFO 11-28 07:00:00 [api_server.py:1] x"),
    ("(RayWorkerWrapper pid=7, ip=10.0.0.2) ERROR x", "ERROR x"),
    ("(EngineCore_DP0 pid=9) ValueError: y", "ValueError: y"),
    ("(VllmWorkerProcess pid=13105) INFO z", "INFO z"),
    ("vllm-openai-1  | (APIServer pid=1) ERROR e", "ERROR e"),
    ("Nov 28 07:00:00 host qwenops[123]: (EngineCore pid=5) ERROR e", "ERROR e"),
    ("\x1b[32mINFO\x1b[0m ok\r", "INFO ok"),
    ("ERROR boom [repeated 30x across cluster]", "ERROR boom"),
])
def test_normalise_strips_every_wrapper(raw: str, clean: str) -> None:
    assert normalise(raw) == clean


def test_reading_is_bounded_and_survives_bad_bytes(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    with log.open("wb") as out:
        out.write(b"INFO start\n" + b"x" * (MAX_LINE_CHARS * 40) + b"\n")
        out.write(b"\xff\xfe ValueError: No available memory for the cache blocks.\n")
        out.write(b"last line without newline")
    with log.open("rb") as stream:
        lines = list(read_log(stream))
    assert [line.number for line in lines] == [1, 2, 3, 4]
    assert len(lines[1].text) == MAX_LINE_CHARS
    assert lines[2].text.startswith("\ufffd\ufffd ValueError")
    assert lines[3].text == "last line without newline"
    assert [f.category for f in classify_text(["\ufffd ValueError: No available memory for the cache blocks."])] \
        == ["kv_cache_no_blocks"]


def test_stdin_is_a_log_too() -> None:
    code, doc, _ = troubleshoot("--log", "-", stdin=(PUBLIC / "17_port_in_use.log").read_bytes())
    assert code == 1 and doc["data"]["findings"][0]["category"] == "port_in_use"
    assert doc["data"]["sources"][0]["name"] == "log on stdin"


def test_fix_uses_the_numbers_of_the_log_and_the_profile() -> None:
    line = ("(EngineCore_DP0 pid=1) ValueError: To serve at least one request with the model's max seq len (4096), "
            "(0.62 GiB KV cache is needed, which is larger than the available KV cache memory (0.27 GiB). Based on "
            "the available memory, the estimated maximum model length is 1792. Try increasing ...")
    code, doc, _ = troubleshoot("--log", "-", "--profile", "4090d", stdin=line.encode())
    first = doc["data"]["findings"][0]
    assert code == 1 and first["category"] == "max_len_exceeds_kv"
    assert "lower max_model_len from 2048 to 1792 (`--set max_model_len=1792`)" in first["fix"]


@pytest.mark.parametrize(("phase_line", "frame", "category"), [
    ("Starting to load model /m", "load_weights", "weights_oom"),
    ("Capturing CUDA graphs (mixed prefill-decode, PIECEWISE)", "capture_model", "cudagraph_oom"),
    ("Model loading took 9.4 GiB", "profile_run", "profile_oom"),
    ('INFO:     127.0.0.1:5 - "POST /v1/chat/completions HTTP/1.1" 200 OK', "execute_model", "runtime_oom"),
])
def test_cuda_oom_is_named_by_its_traceback_frames(phase_line: str, frame: str, category: str) -> None:
    oom = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity"
    log = [phase_line, "Traceback (most recent call last):", f'  File "/x/vllm/y.py", line 1, in {frame}', oom]
    assert classify_text(log)[0].category == category
    # Without frames, the phase reached decides.
    assert classify_text([phase_line, oom])[0].category == category


def test_a_prompt_in_the_request_log_is_not_evidence() -> None:
    prompt = ("INFO 11-28 07:00:00 [logger.py:41] Received request chatcmpl-1: prompt: 'ValueError: No available "
              "memory for the cache blocks. CUDA out of memory [Errno 98] address already in use'")
    assert classify_text(["INFO:     Application startup complete.", prompt]) == []


@pytest.mark.parametrize("make", ["directory", "missing", "empty", "binary"])
def test_bad_log_files_are_one_line_and_exit_2(make: str, tmp_path: Path) -> None:
    target = tmp_path / "server.log"
    if make == "directory":
        target.mkdir()
    elif make == "empty":
        target.write_bytes(b"")
    elif make == "binary":
        target.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8)
    result = CliRunner().invoke(cli, ["troubleshoot", "--log", str(target)], catch_exceptions=False)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"error: --log: {target}") and result.stderr.count("\n") == 1


@pytest.mark.parametrize(("option", "tool"), [("--journal", "journalctl"), ("--docker", "docker")])
def test_a_missing_tool_is_one_line_and_exit_3(option: str, tool: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "qwenops", "troubleshoot", option, "vllm"], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, "PATH": str(tmp_path)}, check=False)
    assert done.returncode == 3, done.stderr
    assert done.stderr == (f"error: {option}: {tool} is not installed here, so the "
                           f"{'journal of unit' if tool == 'journalctl' else 'docker logs of'} vllm cannot be read "
                           f"(save the log to a file and pass --log FILE)\n")


@pytest.mark.parametrize("url", ["ftp://x", "localhost:8000", "http://host:8000/\n"])
def test_a_url_that_is_not_http_is_bad_input(url: str) -> None:
    result = CliRunner().invoke(cli, ["troubleshoot", "--base-url", url], catch_exceptions=False)
    assert result.exit_code == 2 and result.stderr.startswith("error: --base-url: ")


def dev_logs() -> list[Path]:
    """Every log a rule writer may run: the corpus's held-out test half is read by its benchmark alone, and a
    corpus log its index.json does not list yet (a collector is adding it) has no known half."""
    from tests.logcorpus import in_test_half, load_cases

    cases = load_cases()
    held_out = {case.path for case in cases if in_test_half(case)}
    indexed = {case.path for case in cases}
    corpus = LOGS / "corpus"
    return sorted(path for path in LOGS.rglob("*.log")
                  if path not in held_out and (not path.is_relative_to(corpus) or path in indexed))


ALL_LOGS = dev_logs()


@pytest.mark.parametrize("engine", ["re2", "re"])
@pytest.mark.parametrize("path", ALL_LOGS, ids=lambda p: str(p.relative_to(LOGS)))
def test_the_block_scanner_finds_what_reading_every_line_finds(path: Path, engine: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """scan_log hands the classifier only candidate lines; the findings, line numbers and count must not change,
    with RE2 or with Python's own `re` (the fallback where google-re2 is missing)."""
    import re
    import sys

    from qwenops.vllmlog.classify import CANDIDATE, SERVED, LogClassifier, _candidate_pattern
    from qwenops.vllmlog.lines import scan_log

    assert type(CANDIDATE).__module__.startswith("re2")  # the dependency is installed and used
    candidate = CANDIDATE
    if engine == "re":
        monkeypatch.setitem(sys.modules, "re2", None)  # `import re2` raises ImportError: the fallback
        candidate = _candidate_pattern()
        assert isinstance(candidate, re.Pattern)

    every, scanned = LogClassifier(), LogClassifier()
    with path.open("rb") as stream:
        lines = list(read_log(stream))
    for line in lines:
        every.feed(line)
    with path.open("rb") as stream:
        candidates = list(scan_log(stream, candidate, SERVED))
    for line in candidates:
        scanned.feed(line)
    assert scanned.findings() == every.findings()
    data = path.read_bytes()
    assert candidates[-1].number == data.count(b"\n") + (not data.endswith(b"\n"))  # every line, joined or not
    assert (scanned.phase, scanned.serving) == (every.phase, every.serving)


@pytest.mark.parametrize("path", ALL_LOGS, ids=lambda p: str(p.relative_to(LOGS)))
def test_the_one_pass_rule_filter_changes_no_finding(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A line no rule names skips the rules one by one after one RE2 pass (classify._ANY_RULE); the findings
    must be those of trying every rule on every line (what runs where google-re2 is missing)."""
    from qwenops.vllmlog import classify

    assert classify._ANY_RULE is not None  # every rule is written in RE2's syntax: the filter is in use
    with path.open("rb") as stream:
        lines = list(read_log(stream))
    filtered = classify.LogClassifier()
    for line in lines:
        filtered.feed(line)
    monkeypatch.setattr(classify, "_ANY_RULE", None)
    every = classify.LogClassifier()
    for line in lines:
        every.feed(line)
    assert filtered.findings() == every.findings()


def test_a_reported_401_needs_a_key_word_on_its_line_and_a_bare_one_is_no_candidate() -> None:
    """The reporter's 401/403 is two linear searches (status, key word), either order; the block scanner passes
    lines by their key word, so an access log of refusals is not read line by line (it was, for a moment: 10x
    slower on 22 MB of nginx 401 lines)."""
    from qwenops.vllmlog.classify import CANDIDATE, _reports_auth

    assert _reports_auth("I set the api key but every request gets 401")
    assert _reports_auth("403 Forbidden from the server")
    assert _reports_auth("the token is right, still 401.")
    assert not _reports_auth("port 4013 and my token")  # a status among digits is none
    nginx = '10.0.0.5 - - [07/Dec/2026:13:00:01 +0000] "POST /v1/chat/completions HTTP/1.1" 401 58 "-" "OpenAI/Python"'
    assert not _reports_auth(nginx)
    assert not CANDIDATE.search(nginx.encode())


COLLECTED = LOGS / "collected"
COLLECTED_INDEX = json.loads((COLLECTED / "index.json").read_text())
# Where the classifier names a log otherwise than the label it was collected under, and why.
NAMED_OTHERWISE = {
    # vLLM's own line says the sampler warm-up with max_num_seqs dummy requests ran out of memory; its
    # fix is max_num_seqs (vLLM says so), not enforce_eager.
    "cudagraph_oom/04_v1_080_sampler_warmup.log": "profile_oom",
    # "high latency" is the symptom the thread reported; the log shows its cause.
    "high_latency/01_v0_preempted_recompute_cumulative_101.log": "kv_cache_preemption",
    "high_latency/02_v1_kv_full_waiting_queue.log": "kv_cache_full",
    # One OOM line with no phase and no frames: the thread says it happened loading fp32 weights; the
    # line alone cannot, so it is named the general way.
    "weights_oom/03_v0_fp32_weights_2080ti.log": "runtime_oom",
}


@pytest.mark.parametrize("entry", COLLECTED_INDEX, ids=lambda e: e["file"])
def test_collected_public_logs_are_named_right(entry: dict[str, str]) -> None:
    code, doc, _ = troubleshoot("--log", str(COLLECTED / entry["file"]))
    findings = doc["data"]["findings"]
    if entry["category"] == "healthy":
        assert [f for f in findings if f["severity"] == "error"] == [] and code == 0
        return
    want = NAMED_OTHERWISE.get(entry["file"], entry["category"])
    assert findings and findings[0]["category"] == want, [f["category"] for f in findings]
    assert findings[0]["fix"]


def test_what_the_profile_alone_supports() -> None:
    from qwenops.config.loader import load_profile
    from qwenops.troubleshoot.profile_rules import profile_findings

    assert profile_findings(load_profile("4090d", env={})) == []
    risky = load_profile("4090d", env={}, cli_overrides={"kv_cache_dtype": "fp8", "max_model_len": "600",
                                                         "disable_log_stats": "true"})
    found = {(f.category, f.severity) for f in profile_findings(risky)}
    assert found == {("request_too_long", "warning"), ("incoherent_output", "warning"),
                     ("metrics_unavailable", "info")}


def test_a_profile_given_adds_its_own_findings_and_says_so() -> None:
    code, doc, _ = troubleshoot("--log", str(PUBLIC / "28_healthy.log"), "-p", "cpu-tiny")
    assert code == 0
    assert [s["name"] for s in doc["data"]["sources"]][-1] == "profile cpu-tiny"
    assert doc["data"]["findings"] == []  # greedy answers (temperature 0) are cpu-tiny's known-answer check
    _, doc, _ = troubleshoot("--log", str(PUBLIC / "28_healthy.log"), "-p", "4090d")
    assert doc["data"]["findings"] == []
