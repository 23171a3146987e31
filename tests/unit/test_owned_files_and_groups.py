"""What qwenops writes and what it signals, against a hostile file system and a forged state directory:
`render -o` and `doctor --save-probe` never write through a symlink and never leave a private file
readable; the state directory's records are replaced, not written through; a run record cannot make
`serve` signal processes that run did not start. Real files, links and processes."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from qwenops.atomicfile import write_atomic
from qwenops.cli import cli
from qwenops.supervisor.lifetime import (
    RUN_ID_ENV,
    end_leftover_group,
    new_run_id,
    run_record,
    write_last_fatal,
    write_run_record,
)
from tests.polling import poll_until


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("target", ["env", "script", "systemd", "kubernetes"])
def test_render_refuses_an_output_that_is_a_symlink_and_leaves_its_target_alone(target: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret.env"
    secret.write_text("KEY=sk-private\n")
    secret.chmod(0o600)
    link = tmp_path / "out"
    link.symlink_to(secret)
    code, _, stderr = invoke("render", target, "-p", "4090d", "-o", str(link))
    assert code == 2
    assert stderr.startswith(f"error: --output: cannot write {link}: it is a symbolic link"), stderr
    assert secret.read_text() == "KEY=sk-private\n"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert link.is_symlink()


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_an_output_that_is_not_a_regular_file_is_refused_never_replaced(kind: str, tmp_path: Path) -> None:
    """A rename replaced a device node or a named pipe with a 0644 file: `sudo qwenops render ... -o /dev/null` would
    have replaced the system's /dev/null (audit 8). Refused, one line, exit 2; the thing stays. (A device node needs
    root to make; a FIFO and a socket are the same code path; a directory is Click's to refuse.)"""
    import socket

    target = tmp_path / "out"
    if kind == "fifo":
        os.mkfifo(target)
    else:
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(target))
    what = {"fifo": "a named pipe", "socket": "a socket"}[kind]
    code, _, stderr = invoke("render", "systemd", "-p", "4090d", "-o", str(target))
    assert code == 2 and stderr.startswith(f"error: --output: cannot write {target}: it is {what}"), stderr
    assert stderr.count("\n") == 1
    code, _, stderr = invoke("doctor", "-p", "4090d", "--save-probe", str(target))
    assert code == 2 and f"save-probe: cannot write {target}: it is {what}" in stderr, stderr
    mode = os.lstat(target).st_mode
    assert {"fifo": stat.S_ISFIFO, "socket": stat.S_ISSOCK}[kind](mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary left beside it


def test_render_refuses_a_dangling_symlink_instead_of_creating_its_target(tmp_path: Path) -> None:
    link = tmp_path / "start.sh"
    link.symlink_to(tmp_path / "elsewhere.sh")
    code, _, _ = invoke("render", "script", "-p", "4090d", "-o", str(link))
    assert code == 2
    assert not (tmp_path / "elsewhere.sh").exists()


def test_doctor_save_probe_refuses_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "probe.json"
    link.symlink_to(victim)
    code, _, stderr = invoke("doctor", "-p", "4090d", "--save-probe", str(link))  # a live probe of this host
    assert code == 2 and f"save-probe: cannot write {link}: it is a symbolic link" in stderr, stderr
    assert victim.read_text() == "keep"


def test_a_private_file_is_never_readable_by_others_and_replaces_the_old_one_whole(tmp_path: Path) -> None:
    seen: list[int] = []
    real_write = os.write

    def spy(fd: int, data: bytes | memoryview) -> int:
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)

    target = tmp_path / "qwenops.env"
    target.write_text("OLD=1\n")
    target.chmod(0o644)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "write", spy)
        write_atomic(target, "QWENOPS_API_KEY=sk-new\n", mode=0o600)
    assert seen and set(seen) == {0o600}  # private from its first byte
    assert target.read_text() == "QWENOPS_API_KEY=sk-new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["qwenops.env"]  # no temporary left


def test_state_records_replace_a_planted_link_instead_of_writing_through_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    record = tmp_path / "serve-p.fatal.json"
    record.symlink_to(victim)
    (tmp_path / "serve-p.fatal.tmp").symlink_to(victim)  # the fixed temporary name an older qwenops used
    write_last_fatal(record, "weights_oom", 1.0)
    assert victim.read_text() == "keep"
    assert not record.is_symlink() and json.loads(record.read_text())["cause"] == "weights_oom"


Start = Callable[..., "subprocess.Popen[bytes]"]


@pytest.fixture
def group() -> Iterator[Start]:
    """A process in a session of its own (its pid is its group): stands for what a record names."""
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True,
                                   env={**os.environ, **(env or {})})
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def forged_record(state_dir: Path, pgid: int, run_id: str) -> Path:
    path = run_record(state_dir, "p")
    path.parent.mkdir(parents=True)
    # The owner: a pid that is no process's (the recording qwenops is gone).
    path.write_text(json.dumps({"pgid": pgid, "qwenops_pid": 2 ** 22 + 1, "qwenops_started": 1.0, "port": 1,
                                "run_id": run_id}))
    return path


def test_a_record_naming_another_process_group_ends_nothing(group: Start, tmp_path: Path) -> None:
    bystander = group()  # a group number reused by someone else's session, or a forged record
    path = forged_record(tmp_path, bystander.pid, new_run_id())
    assert end_leftover_group(path, what="profile p", port=1) is None
    assert bystander.poll() is None  # still running
    assert not path.exists()


def test_a_record_without_a_run_id_ends_nothing(group: Start, tmp_path: Path) -> None:
    bystander = group()
    path = run_record(tmp_path, "p")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pgid": bystander.pid, "qwenops_pid": 2 ** 22 + 1, "qwenops_started": 1.0}))
    assert end_leftover_group(path, what="profile p", port=1) is None
    assert bystander.poll() is None


def test_a_marked_process_that_left_the_group_is_ended_too(group: Start, tmp_path: Path) -> None:
    """A worker that started its own session (setsid, a daemonizing helper) outlived the next start's cleanup,
    though it carried the run id, and could hold the GPU and the port (audit 5)."""
    run_id = new_run_id()
    left, escaped, bystander = group({RUN_ID_ENV: run_id}), group({RUN_ID_ENV: run_id}), group()
    path = run_record(tmp_path, "p")
    write_run_record(path, left.pid, port=1, run_id=run_id)
    record = json.loads(path.read_text())
    record["qwenops_pid"] = 2 ** 22 + 1
    path.write_text(json.dumps(record))
    said = end_leftover_group(path, what="profile p", port=1)
    assert said is not None and said.startswith("ended 2 process(es) of profile p")
    poll_until(lambda: left.poll() is not None and escaped.poll() is not None, "both marked processes ended",
               interval_s=0.05)
    assert bystander.poll() is None


def test_a_group_this_run_marked_is_ended(group: Start, tmp_path: Path) -> None:
    run_id = new_run_id()
    left = group({RUN_ID_ENV: run_id})
    path = run_record(tmp_path, "p")
    write_run_record(path, left.pid, port=1, run_id=run_id)
    record = json.loads(path.read_text())
    record["qwenops_pid"] = 2 ** 22 + 1  # as if the qwenops that wrote it had been SIGKILLed
    path.write_text(json.dumps(record))
    said = end_leftover_group(path, what="profile p", port=1)
    assert said is not None and said.startswith("ended 1 process(es) of profile p")
    poll_until(lambda: left.poll() is not None, "the marked process ended", interval_s=0.05)
    assert left.returncode == -signal.SIGTERM
