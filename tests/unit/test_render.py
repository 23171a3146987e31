"""Rendered launch artefacts: golden files, vLLM's own flag names, and a script that really runs."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from qwenops.cli import cli
from qwenops.config.loader import load_profile
from qwenops.config.paths import available_profiles
from qwenops.render.script import start_script
from qwenops.render.vllm import vllm_argv
from tests.conftest import GOLDEN_STATE_DIR, REPO, Golden

PROFILES = sorted(available_profiles())
FLAGS_FILE = REPO / "tests" / "data" / "vllm_serve_flags.json"


def flags_of(name: str) -> list[str]:
    return vllm_argv(load_profile(name, env={}), state_dir=Path(GOLDEN_STATE_DIR))


@pytest.mark.parametrize("name", PROFILES)
def test_flags_match_golden(name: str, golden: Golden, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWENOPS_STATE_DIR", GOLDEN_STATE_DIR)
    result = CliRunner().invoke(cli, ["render", "flags", "--profile", name], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    golden(f"render/{name}.flags.txt", result.stdout)
    assert shlex.split(result.stdout) == flags_of(name)


@pytest.mark.parametrize("name", PROFILES)
def test_script_matches_golden(name: str, golden: Golden) -> None:
    golden(f"render/{name}.start_api.sh", start_script(load_profile(name, env={}), state_dir=Path(GOLDEN_STATE_DIR)))


def test_committed_start_api_sh_is_the_4090d_rendering() -> None:
    committed = (REPO / "scripts" / "start_api.sh").read_text()
    assert committed == start_script(load_profile("4090d", env={}), state_dir=Path(GOLDEN_STATE_DIR))


@pytest.mark.parametrize("name", PROFILES)
def test_only_openai_entrypoint_and_vllm_flags(name: str) -> None:
    argv = flags_of(name)
    assert "vllm.entrypoints.api_server" not in argv  # the demo server has no /v1/chat/completions
    assert argv[:2] == ["vllm", "serve"] or argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    known = set(json.loads(FLAGS_FILE.read_text())["flags"])
    used = {word.split("=", 1)[0] for word in argv if word.startswith("--")}
    assert used <= known, f"not vLLM flags: {sorted(used - known)}"


@pytest.mark.parametrize("name", PROFILES)
def test_script_is_valid_bash_and_execs_exactly_the_rendered_argv(name: str, tmp_path: Path) -> None:
    script = tmp_path / "start_api.sh"
    script.write_text(start_script(load_profile(name, env={}), state_dir=Path(GOLDEN_STATE_DIR)))
    subprocess.run(["bash", "-n", str(script)], check=True)
    # Stand-ins for `vllm` and `python3` that print their argv and environment, one word per line.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    recorder = (
        "#!/usr/bin/env bash\n"
        'printf "%s\\n" "$(basename "$0")" "$@" > "$ARGV_OUT"\n'
        'env > "$ENV_OUT"\n'
    )
    for program in ("vllm", "python3"):
        (fake_bin / program).write_text(recorder)
        (fake_bin / program).chmod(0o755)
    env = {
        "PATH": f"{fake_bin}:{os.environ['PATH']}",
        "ARGV_OUT": str(tmp_path / "argv"),
        "ENV_OUT": str(tmp_path / "env"),
        "QWENOPS_API_KEY": "sk-from-env",
    }
    subprocess.run(["bash", str(script), "--extra-flag-from-caller"], check=True, env=env)
    recorded = (tmp_path / "argv").read_text().splitlines()
    assert recorded == [*flags_of(name), "--extra-flag-from-caller"]
    server_env = dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines() if "=" in line)
    assert server_env["VLLM_API_KEY"] == "sk-from-env"
    for key, value in load_profile(name, env={}).env.items():
        assert server_env[key] == value


def test_script_has_no_continuation_lines_to_break() -> None:
    for name in PROFILES:
        text = start_script(load_profile(name, env={}), state_dir=Path(GOLDEN_STATE_DIR))
        # Flags live in a bash array, so a comment can never end a `\` continuation early.
        assert not any(line.rstrip().endswith("\\") for line in text.splitlines())
        assert "set -euo pipefail" in text
        assert sum(line.startswith("exec ") for line in text.splitlines()) == 1


def test_render_script_writes_an_executable_file(tmp_path: Path) -> None:
    out = tmp_path / "start.sh"
    result = CliRunner().invoke(cli, ["render", "script", "-p", "4090d", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0
    assert out.stat().st_mode & 0o111
    assert "exec vllm serve Qwen/Qwen3-14B-AWQ" in out.read_text()


def test_render_script_to_unwritable_path_is_bad_input(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["render", "script", "-p", "4090d", "-o", str(tmp_path / "no" / "dir" / "x.sh")])
    assert result.exit_code == 2
    assert "--output: cannot write" in result.stderr
    assert f"(create {tmp_path / 'no' / 'dir'} first, or choose another path)" in result.stderr


@pytest.mark.parametrize(
    ("value", "rendered"), [("0.9512345678", "0.9512345678"), ("0.95", "0.95"), ("12", "12"), ("654321", "654321")]
)
def test_float_flags_keep_every_digit(value: str, rendered: str) -> None:
    field = "cpu_offload_gb" if float(value) > 1 else "gpu_memory_utilization"
    argv = vllm_argv(load_profile("4090d", env={}, cli_overrides={field: value}), state_dir=Path("/x"))
    flag = "--" + field.replace("_", "-")
    assert argv[argv.index(flag) + 1] == rendered
