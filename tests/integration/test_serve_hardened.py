"""`qwenops serve`, hardened, on the real vLLM CPU engine: auto-fit after a start-up that does not fit,
the progress watchdog on a stopped engine, and no orphans when qwenops itself is SIGKILLed."""

from __future__ import annotations

import json
import os
import signal
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from tests.integration.conftest import Serve, kv_bytes_overrides, start_serve
from tests.polling import poll_until

start_serve_ctx = contextmanager(start_serve)

def too_long_profile() -> str:
    """cpu-tiny's own file with a context the 1 MB cache cannot hold: vLLM 0.32 refuses to start and
    estimates that 1792 tokens would fit. Its KV settings are conftest.kv_bytes_overrides' (no
    VLLM_CPU_KVCACHE_SPACE, which would override the byte count; the rest of cpu-tiny's env and flags
    kept), so this profile follows cpu-tiny wherever cpu-tiny changes."""
    from qwenops.config.paths import shipped_dirs

    raw = yaml.safe_load((shipped_dirs("profiles")[0] / "cpu-tiny.yaml").read_text())
    raw.update(description="cpu-tiny with a KV cache too small for its max_model_len (auto-fit test)",
               max_model_len=4096, **kv_bytes_overrides(1_000_000))
    raw["supervise"] = {**raw["supervise"], "drain_timeout_s": 5, "health_interval_s": 1, "stall_timeout_s": 8,
                        "stall_probe_timeout_s": 4}
    return str(yaml.safe_dump(raw))


@pytest.fixture
def profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "profiles"
    directory.mkdir()
    (directory / "too-long.yaml").write_text(too_long_profile())
    (directory / "watched.yaml").write_text("extends: cpu-tiny\nsupervise:\n  health_interval_s: 1\n"
                                            "  stall_timeout_s: 6\n  stall_probe_timeout_s: 4\n")
    monkeypatch.setenv("QWENOPS_PROFILES_DIR", str(directory))
    return directory


def finish(serve: Serve, timeout_s: float = 300) -> tuple[int, dict[str, object]]:
    stdout, _ = serve.process.communicate(timeout=timeout_s)
    return serve.process.returncode, json.loads(stdout)


def group_members(pgid: int) -> list[int]:
    from qwenops.supervisor.process import live_group_members

    return live_group_members(pgid)


def served_max_model_len(port: int) -> int:
    models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).json()["data"]
    return int(models[0]["max_model_len"])


@pytest.mark.engine
def test_without_auto_fit_the_fatal_result_names_the_set_to_apply(state_dir: Path, profiles: Path) -> None:
    with start_serve_ctx(state_dir, "-p", "too-long") as serve:
        code, doc = finish(serve)
    assert code == 1, doc
    data = doc["data"]
    assert data["state"] == "FATAL" and data["cause"]["category"] == "max_len_exceeds_kv"  # type: ignore[index]
    assert data["cause"]["change"] == {"max_model_len": 1792}  # type: ignore[index]
    assert not (state_dir / "profiles" / "too-long-fitted.yaml").exists()


@pytest.mark.engine
def test_auto_fit_starts_with_vllms_estimate_and_saves_the_fitted_profile(state_dir: Path, profiles: Path) -> None:
    with start_serve_ctx(state_dir, "-p", "too-long", "--auto-fit") as serve:
        serve.wait_message("READY=1", timeout_s=800)
        assert served_max_model_len(serve.port) == 1792
        os.killpg(serve.process.pid, signal.SIGTERM)
        code, doc = finish(serve)
    assert code == 0, doc
    [fit] = doc["data"]["fits"]  # type: ignore[index]
    assert (fit["field"], fit["old"], fit["new"], fit["category"]) == ("max_model_len", 4096, 1792,
                                                                       "max_len_exceeds_kv")
    saved = state_dir / "profiles" / "too-long-fitted.yaml"
    assert saved.read_text().startswith("# Fitted by `qwenops serve --auto-fit`")
    from click.testing import CliRunner

    from qwenops.cli import cli

    shown = CliRunner().invoke(cli, ["profiles", "show", "too-long-fitted", "--json"],
                               env={"QWENOPS_STATE_DIR": str(state_dir)}, catch_exceptions=False)
    assert json.loads(shown.stdout)["data"]["values"]["max_model_len"] == 1792


@pytest.mark.engine
def test_a_stopped_engine_with_requests_in_flight_is_detected_and_restarted(state_dir: Path,
                                                                             profiles: Path) -> None:
    with start_serve_ctx(state_dir, "-p", "watched") as serve:
        serve.wait_message("READY=1", timeout_s=800)
        base = f"http://127.0.0.1:{serve.port}"
        long_answer = {"model": "Qwen3-14B", "max_tokens": 400, "ignore_eos": True, "stream": True,
                       "messages": [{"role": "user", "content": "Tell me about the sea."}]}
        with httpx.Client(timeout=120) as client, \
                client.stream("POST", base + "/v1/chat/completions", json=long_answer) as response:
            assert any(line.startswith("data: {") for line in response.iter_lines())  # the engine is busy
            engine = next(p for p in psutil.Process(serve.process.pid).children(recursive=True)
                          if p.name().startswith("VLLM::EngineCore"))
            engine.send_signal(signal.SIGSTOP)
            try:
                restart = serve.wait_message("STATUS=restarting", timeout_s=120)
            finally:
                if engine.is_running():
                    engine.send_signal(signal.SIGCONT)
        assert "stopped making progress" in serve.messages[restart][1]
        serve.wait_message("READY=1", after=restart, timeout_s=800)  # back under supervision
        os.killpg(serve.process.pid, signal.SIGTERM)
        code, _ = finish(serve)
    assert code == 0


@pytest.mark.engine
def test_sigkill_of_qwenops_leaves_no_process(state_dir: Path) -> None:
    with start_serve_ctx(state_dir) as serve:
        serve.wait_message("READY=1", timeout_s=800)
        [guard] = psutil.Process(serve.process.pid).children()
        tree = [guard.pid, *(p.pid for p in guard.children(recursive=True))]
        assert len(tree) >= 3  # guard, API server, EngineCore (and workers)
        serve.process.send_signal(signal.SIGKILL)
        serve.process.wait(10)
        poll_until(lambda: group_members(guard.pid) == [], "the killed serve's process group is gone", interval_s=0.1)


@pytest.mark.engine
def test_a_group_left_by_a_killed_run_is_ended_before_the_next_start(state_dir: Path) -> None:
    # The second start runs inside the first's block: leaving it runs the fixture's own safety net,
    # which would end the group the second start must find.
    with start_serve_ctx(state_dir) as first:
        first.wait_message("READY=1", timeout_s=400)
        [guard] = psutil.Process(first.process.pid).children()
        # The guard cannot act (stopped: as good as dead) when qwenops is killed: the group is left behind.
        guard.send_signal(signal.SIGSTOP)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
        assert group_members(guard.pid), "the test needs a left-over group to clean up"
        with start_serve_ctx(state_dir, "--port", str(first.port)) as second:
            second.wait_message("READY=1", timeout_s=400)
            assert group_members(guard.pid) == []
            os.killpg(second.process.pid, signal.SIGTERM)
            code, doc = finish(second)
    assert code == 0
    assert str(doc["data"]["ended_leftover"]).startswith("ended "), doc["data"]  # type: ignore[index]
