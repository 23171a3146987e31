"""Files qwenops reads but did not write: a named pipe, a device or a directory where a profile, an env file,
a probe file, a workload or a state record should be is refused at once, never waited on (qwenops/readfile.py).
The commands run in their own process with a timeout: a regression is a failed test, not a hung suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qwenops.errors import BadInputError
from qwenops.jsonfile import read_json
from qwenops.readfile import NotRegularFile, read_capped
from qwenops.supervisor.lifetime import read_last_fatal
from qwenops.tune.workload import load_workload
from tests.conftest import REPO


def qwenops(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done: subprocess.CompletedProcess[str] = subprocess.run(
        [sys.executable, "-m", "qwenops", *args], cwd=REPO, capture_output=True, text=True, timeout=120,
        check=False, env={**os.environ, **env}, stdin=subprocess.DEVNULL)
    return done


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def test_a_named_pipe_is_refused_at_once(fifo: Path) -> None:
    with pytest.raises(NotRegularFile, match="is a named pipe, not a regular file"):
        read_capped(fifo, 10)


@pytest.mark.parametrize("kind", ["directory", "device"])
def test_a_directory_or_a_device_is_refused(kind: str, tmp_path: Path) -> None:
    path = tmp_path if kind == "directory" else Path("/dev/zero")
    with pytest.raises(NotRegularFile, match=f"is a {kind}, not a regular file"):
        read_capped(path, 10)
    link = tmp_path / "link"
    link.symlink_to(path)
    with pytest.raises(NotRegularFile):
        read_capped(link, 10)


def test_a_nul_in_a_path_is_an_oserror_not_a_valueerror(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="NUL"):
        read_capped(f"{tmp_path}/a\0b", 10)
    with pytest.raises(BadInputError, match="NUL"):
        read_json(Path(f"{tmp_path}/a\0b"), field="--probe-file", cap=10, what="a probe file")


def test_a_regular_file_reads_one_byte_past_its_cap(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_capped(path, 10) == b"x" * 11
    assert read_capped(path, 1000) == b"x" * 100


def test_json_names_what_was_expected(fifo: Path) -> None:
    with pytest.raises(BadInputError, match="is a named pipe, not a probe file"):
        read_json(fifo, field="--probe-file", cap=10, what="a probe file")


def test_a_workload_that_is_a_pipe_is_bad_input(fifo: Path) -> None:
    with pytest.raises(BadInputError, match="named pipe") as caught:
        load_workload(fifo)
    assert caught.value.field == "--workload"


def test_a_state_record_that_is_a_pipe_is_no_record(fifo: Path) -> None:
    assert read_last_fatal(fifo) is None


def test_a_pipe_among_the_profiles_does_not_hang_the_listing(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "ok.yaml").write_text("extends: cpu-tiny\ndescription: fine\n", encoding="utf-8")
    os.mkfifo(profiles / "pipe.yaml")
    env = {"QWENOPS_PROFILES_DIR": str(profiles), "QWENOPS_STATE_DIR": str(tmp_path / "state")}
    listed = qwenops("profiles", "list", "--json", env=env)
    assert listed.returncode in (0, 1, 2), listed.stderr
    assert "named pipe" in listed.stdout + listed.stderr
    shown = qwenops("render", "flags", "-p", "pipe", env=env)
    assert shown.returncode == 2
    assert "is a named pipe, not a regular file" in shown.stderr
    assert len(shown.stderr.strip().splitlines()) <= 2  # one line (and its hint)
    fine = qwenops("render", "flags", "-p", "ok", env=env)
    assert fine.returncode == 0, fine.stderr


@pytest.mark.parametrize("what", ["--probe-file", "QWENOPS_ENV_FILE"])
def test_every_file_flag_refuses_a_pipe(what: str, fifo: Path, tmp_path: Path) -> None:
    env = {"QWENOPS_STATE_DIR": str(tmp_path / "state")}
    if what == "--probe-file":
        done = qwenops("plan", "--profile", "4090d", "--probe-file", str(fifo), env=env)
    else:
        done = qwenops("profiles", "list", env={**env, "QWENOPS_ENV_FILE": str(fifo)})
    assert done.returncode == 2, done.stderr
    assert "named pipe" in done.stderr
    assert json.dumps(done.stderr)  # printable, one error
