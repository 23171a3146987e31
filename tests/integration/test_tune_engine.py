"""`qwenops tune` on the real vLLM CPU engine: a 2 x 2 grid within its budget, the pick, the saved profile
serving, and a candidate made to fail reported with the classifier's cause. Kept short: tiny answers, a
concurrency cap of 2, and a grid where the planner prunes half the candidates (each start is ~30-50 s)."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from tests.integration.conftest import free_port_in, start_serve

TUNE_PORTS = range(18400, 18500)
BUDGET_MIN = 5.0


def free_tune_port() -> int:
    return free_port_in(TUNE_PORTS)


def servers_on(port: int) -> list[int]:
    """Processes whose command line serves on PORT (a vLLM API server or its engine, by argv)."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = process.info.get("cmdline") or []
        if "--port" in cmdline and str(port) in cmdline and "tune" not in cmdline:
            found.append(process.info["pid"])
    return found


def served_args(log: Path) -> dict[str, object]:
    """vLLM's own record of the flags it started with: its `non-default args: {...}` line."""
    for line in log.read_text(errors="replace").splitlines():
        if "non-default args: " in line:
            return dict(ast.literal_eval(line.split("non-default args: ", 1)[1]))
    raise AssertionError(f"{log} has no non-default args line")


@pytest.mark.engine
def test_tune_picks_the_best_measured_candidate_prunes_without_starting_and_its_profile_serves(
    state_dir: Path,
) -> None:
    port = free_tune_port()
    env = {**os.environ, "QWENOPS_STATE_DIR": str(state_dir)}
    argv = [sys.executable, "-m", "qwenops", "tune", "--port", str(port), "--slo-ttft-ms", "2000",
            "--slo-tpot-ms", "200", "--prompt-tokens", "32", "--output-tokens", "8", "--max-num-seqs", "1,2",
            "--max-model-len", "256,8192", "--max-num-batched-tokens", "512", "--max-concurrency", "2",
            "--requests", "4", "--budget-min", str(BUDGET_MIN), "--json"]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=BUDGET_MIN * 60 + 120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    assert process.returncode == 0, err[-3000:]
    assert servers_on(port) == []  # every candidate's process group is gone
    data = json.loads(out)["data"]
    assert data["elapsed_s"] <= BUDGET_MIN * 60
    rows = data["candidates"]
    pruned = [r for r in rows if r["status"] == "pruned"]
    started = [r for r in rows if r["status"] in ("measured", "failed")]
    assert len(rows) == 4 and len(pruned) == 2
    assert all(r["candidate"]["max_model_len"] == 8192 and "context of 4096" in r["detail"] for r in pruned)
    assert data["server_starts"] == len(started) >= 1
    # One log per started candidate, each showing vLLM started with that candidate's values; none for the pruned.
    logs = {p.name: p for p in (state_dir / "logs").glob("tune-*.log")}
    assert sorted(logs) == sorted(f"tune-s{r['candidate']['max_num_seqs']}-b512-l256.log" for r in started)
    for row in started:
        args = served_args(logs[f"tune-s{row['candidate']['max_num_seqs']}-b512-l256.log"])
        assert (args["max_num_seqs"], args["max_model_len"], args["port"]) == (
            row["candidate"]["max_num_seqs"], 256, port)
    measured = [r for r in rows if r["status"] == "measured"]
    assert measured, err[-3000:]
    best = max(measured, key=lambda r: r["goodput_rps"])
    assert data["chosen"] == best["candidate"]
    assert data["chosen_goodput_rps"] == best["goodput_rps"] > 0
    for row in measured:
        assert row["levels"] and row["bound"]
        assert all(level["requests"] >= 4 for level in row["levels"])
    assert "tune seqs=" in err  # one progress line per candidate on stderr (not a terminal)

    saved = Path(data["saved_profile"])
    assert saved == state_dir / "profiles" / "cpu-tiny-tuned.yaml"
    text = saved.read_text()
    assert "extends: cpu-tiny" in text and "SLO: TTFT <= 2000 ms, TPOT <= 200 ms" in text
    for serve in start_serve(state_dir, "-p", "cpu-tiny-tuned"):
        serve.wait_message("READY=1")
        models = httpx.get(f"http://127.0.0.1:{serve.port}/v1/models", timeout=10).json()
        assert models["data"][0]["max_model_len"] == 256
        serve.remember_server_pids()
        serve.process.send_signal(signal.SIGTERM)
        serve_out, _ = serve.process.communicate(timeout=120)
        assert json.loads(serve_out)["data"]["state"] == "STOPPED"


@pytest.mark.engine
def test_a_candidate_made_to_fail_is_reported_with_the_classified_cause(
        state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The launcher is the real one (supervisor, vLLM); the candidate it is given asks for a context the
    model does not have, so vLLM refuses while parsing its configuration, in seconds."""
    from qwenops.config.settings import load_settings
    from qwenops.tune.options import tune_options
    from qwenops.tune.results import Candidate
    from qwenops.tune.run import _launcher, run_tune

    port = free_tune_port()
    options = tune_options(slo_ttft_ms=2000, slo_tpot_ms=200, prompt_tokens=32, output_tokens=8,
                           max_num_seqs=(2,), max_model_len=(256,), max_num_batched_tokens=(512,), port=port,
                           max_concurrency=1, requests_per_level=2, budget_min=3)
    monkeypatch.setenv("QWENOPS_STATE_DIR", str(state_dir))
    real = _launcher(options, {"port": str(port)}, load_settings())
    launched: list[Candidate] = []

    def sabotaged(candidate: Candidate, startup_timeout_s: float, on_phase):  # type: ignore[no-untyped-def]
        launched.append(candidate)
        return real(candidate.model_copy(update={"max_model_len": 100000}), startup_timeout_s, on_phase)

    result = run_tune(options, launch=sabotaged)
    (row,) = result.candidates
    assert row.status == "failed" and row.cause is not None
    assert row.cause.category == "invalid_config"
    assert "4096" in row.cause.fix and row.cause.line
    assert len(launched) == 1 and result.server_starts == 1  # recorded, not retried
    assert result.chosen is None and result.saved_profile is None and not result.ok
    assert servers_on(port) == []
