"""Hostile and broken input to troubleshoot's log sources, the env file and tune's plan: each is one line
naming the option, field or tool, a documented exit code (2 bad input, 3 unreachable), never 4, in
bounded time and memory. Real files, FIFOs, devices, sockets, terminals and subprocesses."""

from __future__ import annotations

import gzip
import os
import pty
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from qwenops import untrusted
from qwenops.cli import cli

REPO = Path(__file__).resolve().parents[2]
LOG_LINE = b"ERROR [Errno 98] error while attempting to bind on address: address already in use\n"


def one_line_error(stderr: str, field: str) -> None:
    assert stderr.startswith(f"error: {field}: "), stderr
    assert stderr.count("\n") == 1, stderr
    assert "internal error" not in stderr


def qwenops(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """The real command in its own process (stdin closed, a terminal, a directory ...)."""
    done: subprocess.CompletedProcess[str] = subprocess.run(  # type: ignore[call-overload]
        [sys.executable, "-m", "qwenops", *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        **kwargs)
    return done


# ------------------------------------------------------------------------------------ --log FILE


@pytest.fixture
def bad_path(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    kind = request.param
    if kind == "directory":
        yield str(tmp_path)
    elif kind == "fifo":
        fifo = tmp_path / "pipe"
        os.mkfifo(fifo)
        yield str(fifo)  # nobody writes to it: opening it must not wait forever
    elif kind == "socket":
        path = tmp_path / "sock"
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        yield str(path)
        server.close()
    elif kind == "too-long":
        yield "/tmp/" + "x" * 5000
    elif kind == "loop":
        (tmp_path / "a").symlink_to(tmp_path / "b")
        (tmp_path / "b").symlink_to(tmp_path / "a")
        yield str(tmp_path / "a")
    elif kind == "empty-path":
        yield ""
    elif kind == "gzip":
        path = tmp_path / "server.log.gz"
        path.write_bytes(gzip.compress(LOG_LINE * 100))
        yield str(path)
    elif kind == "not-utf8-name-missing":
        yield str(tmp_path / b"\xff\x1b]0;x\x07.log".decode("utf-8", "surrogateescape"))
    elif kind == "not-a-dir":
        (tmp_path / "file").write_bytes(LOG_LINE)
        yield str(tmp_path / "file" / "x.log")
    else:
        yield kind  # a device or /proc file


BAD_PATHS = ["directory", "fifo", "socket", "too-long", "loop", "empty-path", "gzip", "not-utf8-name-missing",
             "not-a-dir", "/dev/zero", "/dev/null", "/dev/urandom", "/proc/self/mem"]


@pytest.mark.parametrize("bad_path", BAD_PATHS, indirect=True)
def test_a_bad_log_path_is_one_line_and_exit_2(bad_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(untrusted, "LOG_PIPE_DEADLINE_S", 1.0)  # a FIFO nobody writes to is waited for that long
    result = CliRunner().invoke(cli, ["troubleshoot", "--log", bad_path], catch_exceptions=False)
    assert result.exit_code == 2, result.stderr
    one_line_error(result.stderr, "--log")
    assert len(result.stderr) < 600  # a 5,000-character path is not repeated whole
    assert "\x1b" not in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_log_is_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "server.log"
    path.write_bytes(LOG_LINE)
    path.chmod(0)
    result = CliRunner().invoke(cli, ["troubleshoot", "--log", str(path)], catch_exceptions=False)
    assert result.exit_code == 2
    one_line_error(result.stderr, "--log")


def test_a_fifo_with_a_writer_is_read(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"printf '%s' '{LOG_LINE.decode().strip()}' > {fifo}"])
    try:
        result = CliRunner().invoke(cli, ["troubleshoot", "--log", str(fifo), "--json"], catch_exceptions=False)
    finally:
        writer.wait(timeout=10)
    assert result.exit_code == 1, result.stderr
    assert '"port_in_use"' in result.stdout


def test_a_huge_log_file_is_read_from_its_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(untrusted, "MAX_LOG_BYTES", 64 * 1024)
    path = tmp_path / "big.log"
    with path.open("wb") as out:
        out.write(b"ValueError: No available memory for the cache blocks.\n")  # only in the head: not read
        out.write(b"INFO ok\n" * 100_000)
        out.write(LOG_LINE)
    result = CliRunner().invoke(cli, ["troubleshoot", "--log", str(path), "--json"], catch_exceptions=False)
    assert result.exit_code == 1, result.stderr
    assert '"port_in_use"' in result.stdout and "kv_cache_no_blocks" not in result.stdout


# ------------------------------------------------------------------------------------ --log - (stdin)


@pytest.mark.parametrize("data", [b"", b"\x00\x01\x02binary", gzip.compress(LOG_LINE)], ids=["empty", "binary",
                                                                                               "gzip"])
def test_bad_bytes_on_stdin_are_exit_2_as_in_a_file(data: bytes, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["troubleshoot", "--log", "-"], input=data, catch_exceptions=False)
    assert result.exit_code == 2, result.stderr
    one_line_error(result.stderr, "--log")
    path = tmp_path / "same.log"
    path.write_bytes(data)
    in_a_file = CliRunner().invoke(cli, ["troubleshoot", "--log", str(path)], catch_exceptions=False)
    assert in_a_file.exit_code == 2


def test_closed_stdin_is_exit_2() -> None:
    done = qwenops("troubleshoot", "--log", "-", preexec_fn=lambda: os.close(0))
    assert done.returncode == 2, done.stderr
    one_line_error(done.stderr, "--log")


def test_stdin_a_terminal_is_exit_2() -> None:
    leader, follower = pty.openpty()
    try:
        done = qwenops("troubleshoot", "--log", "-", stdin=follower)
    finally:
        os.close(leader)
        os.close(follower)
    assert done.returncode == 2, done.stderr
    one_line_error(done.stderr, "--log")
    assert "terminal" in done.stderr


def test_stdin_a_directory_is_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Python itself will not start with a directory on stdin; one handed over later is refused too."""
    from qwenops.errors import BadInputError
    from qwenops.troubleshoot.sources import LogSource, open_source

    fd = os.open(tmp_path, os.O_RDONLY)

    class DirectoryStdin:
        closed = False

        def fileno(self) -> int:
            return fd

    monkeypatch.setattr("sys.stdin", DirectoryStdin())
    try:
        with pytest.raises(BadInputError) as caught, open_source(LogSource("stdin", "-", "--log")):
            pass
    finally:
        os.close(fd)
    assert caught.value.one_line() == "--log: stdin is a directory (name the log file itself)"


def test_a_real_pipe_on_stdin_is_read() -> None:
    done = qwenops("troubleshoot", "--log", "-", "--json", input=LOG_LINE.decode())
    assert done.returncode == 1, done.stderr
    assert '"port_in_use"' in done.stdout


@pytest.mark.parametrize("writer", [["yes", "INFO a line"], ["sleep", "60"]], ids=["endless", "silent"])
def test_a_pipe_that_never_ends_is_cut(writer: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Real pipes on stdin: one that floods past the read cap, one that never sends nor closes."""
    from qwenops.errors import BadInputError
    from qwenops.troubleshoot.sources import LogSource, open_source

    monkeypatch.setattr(untrusted, "MAX_LOG_READ_BYTES", 4 * 1024 * 1024)
    monkeypatch.setattr(untrusted, "LOG_PIPE_DEADLINE_S", 1.0)
    with subprocess.Popen(writer, stdout=subprocess.PIPE) as process:
        assert process.stdout is not None
        with os.fdopen(os.dup(process.stdout.fileno()), "r") as stdin:
            monkeypatch.setattr("sys.stdin", stdin)
            with pytest.raises(BadInputError) as caught, open_source(LogSource("stdin", "-", "--log")):
                pass
        process.kill()
    assert caught.value.field == "--log"
    assert caught.value.message.startswith("stdin ")


# ------------------------------------------------------------------------------ --journal / --docker


def fake_tool(bin_dir: Path, name: str, script: str) -> Path:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


@pytest.mark.parametrize(("option", "tool"), [("--journal", "journalctl"), ("--docker", "docker")])
@pytest.mark.parametrize("how", ["sleeps", "child-holds-the-pipe", "prints-endlessly"])
def test_a_hung_tool_is_cut_at_its_deadline_with_exit_3(option: str, tool: str, how: str, tools: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(untrusted, "TOOL_DEADLINE_S", 1.0)
    pid_file = tools / "child.pid"
    script = {"sleeps": "exec sleep 60\n",
              "child-holds-the-pipe": f"sleep 60 &\necho $! > {pid_file}\necho 'INFO started'\nexit 0\n",
              "prints-endlessly": "exec yes 'INFO a line'\n"}[how]
    fake_tool(tools, tool, script)
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["troubleshoot", option, "vllm"], catch_exceptions=False)
    assert time.monotonic() - started < 30  # a hang, not a timing goal
    assert result.exit_code == 3, result.stderr
    one_line_error(result.stderr, option)
    assert tool in result.stderr
    if how == "child-holds-the-pipe":
        child = int(pid_file.read_text())
        for _ in range(100):  # the whole process group was ended
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the tool's child still runs")


@pytest.mark.parametrize(("option", "tool"), [("--journal", "journalctl"), ("--docker", "docker")])
def test_a_failing_tool_says_what_the_tool_said(option: str, tool: str, tools: Path) -> None:
    said = ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
            if tool == "docker" else "Failed to get journal access: Permission denied")
    fake_tool(tools, tool, f"echo '{said}' >&2\nexit 1\n")
    result = CliRunner().invoke(cli, ["troubleshoot", option, "vllm"], catch_exceptions=False)
    assert result.exit_code == 3, result.stderr
    one_line_error(result.stderr, option)
    assert said in result.stderr
    assert "check that the docker name is right" not in result.stderr


@pytest.mark.parametrize(("option", "tool"), [("--journal", "journalctl"), ("--docker", "docker")])
def test_the_tool_is_asked_for_the_tail_with_the_name_after_its_options(option: str, tool: str,
                                                                           tools: Path) -> None:
    argv_file = tools / "argv"
    fake_tool(tools, tool, f'for a in "$@"; do echo "$a"; done > {argv_file}\necho "{LOG_LINE.decode().strip()}"\n')
    result = CliRunner().invoke(cli, ["troubleshoot", option, "vllm-1.service" if tool == "journalctl" else "vllm-1",
                                      "--json"], catch_exceptions=False)
    assert result.exit_code == 1, result.stderr
    argv = argv_file.read_text().splitlines()
    assert (argv[-1].startswith("vllm-1") and argv[-2] in ("--", )) or argv[-1].startswith("--unit=")


@pytest.mark.parametrize(("option", "tool"), [("--journal", "journalctl"), ("--docker", "docker")])
@pytest.mark.parametrize("name", ["", "--help", "-f", "a b", "x;y", "\x1b]0;t\x07", "../x", "n" * 300])
def test_a_name_that_is_not_a_unit_or_container_is_refused_before_any_tool_runs(option: str, tool: str, name: str,
                                                                               tools: Path) -> None:
    marker = tools / "ran"
    fake_tool(tools, tool, f"touch {marker}\n")
    result = CliRunner().invoke(cli, ["troubleshoot", f"{option}={name}"], catch_exceptions=False)
    assert result.exit_code == 2, result.stderr
    one_line_error(result.stderr, option)
    assert not marker.exists()


# ------------------------------------------------------------------------------------- settings


@pytest.fixture
def env_path(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    kind = request.param
    if kind == "fifo":
        os.mkfifo(tmp_path / "env")
        yield str(tmp_path / "env")
    elif kind == "huge":
        path = tmp_path / "big.env"
        with path.open("wb") as out:
            out.truncate(untrusted.MAX_ENV_FILE_BYTES + 1)
        yield str(path)
    elif kind == "no-such-user":
        yield "~nosuchuser-qwenops/x.env"
    elif kind == "too-long":
        yield "/tmp/" + "e" * 5000
    elif kind == "loop":
        (tmp_path / "a").symlink_to(tmp_path / "a")
        yield str(tmp_path / "a")
    elif kind == "not-utf8":
        path = tmp_path / "latin1.env"
        path.write_bytes(b"QWENOPS_PROFILE=caf\xe9\n")
        yield str(path)
    else:
        yield kind


ENV_PATHS = ["fifo", "huge", "no-such-user", "too-long", "loop", "not-utf8", "/dev/zero", "/dev/null", "/proc/self/mem"]


@pytest.mark.parametrize("env_path", ENV_PATHS, indirect=True)
def test_a_bad_env_file_is_one_line_and_exit_2(env_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWENOPS_ENV_FILE", env_path)
    result = CliRunner().invoke(cli, ["render", "flags", "-p", "cpu-tiny"], catch_exceptions=False)
    assert result.exit_code == 2, result.stderr
    one_line_error(result.stderr, "QWENOPS_ENV_FILE")
    assert "not found" not in result.stderr or "no-such" in env_path
    assert len(result.stderr) < 600


@pytest.mark.parametrize("variable", ["QWENOPS_PROFILES_DIR", "QWENOPS_STATE_DIR"])
def test_a_home_of_no_user_in_a_path_setting_is_exit_2(variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, "~nosuchuser-qwenops/x")
    result = CliRunner().invoke(cli, ["render", "flags", "-p", "cpu-tiny"], catch_exceptions=False)
    assert result.exit_code == 2, result.stderr
    one_line_error(result.stderr, variable)


def test_a_misspelled_variable_is_named_with_the_real_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWENOPS_PROFIEL", "4090d")
    monkeypatch.setenv("QWENOPS_MAX_MODEL_LENGTH", "1024")
    monkeypatch.setenv("QWENOPS_API_SERVICE_HOST", "10.0.0.1")  # Kubernetes' service variables are no typo
    result = CliRunner().invoke(cli, ["render", "flags", "-p", "cpu-tiny"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert any("QWENOPS_PROFIEL" in w and "QWENOPS_PROFILE" in w for w in warnings), result.stderr
    assert any("QWENOPS_MAX_MODEL_LENGTH" in w and "QWENOPS_MAX_MODEL_LEN" in w for w in warnings), result.stderr
    assert not any("SERVICE_HOST" in w for w in warnings)
    assert len(warnings) == 2  # once each, however often the settings are read


def test_a_bad_env_file_line_is_named_with_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "q.env"
    env_file.write_text("QWENOPS_PORT=9000\nthis is not a line\nQWENOPS_HOST=127.0.0.1\n")
    monkeypatch.setenv("QWENOPS_ENV_FILE", str(env_file))
    result = CliRunner().invoke(cli, ["render", "flags", "-p", "cpu-tiny", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert "python-dotenv" not in result.stderr
    assert f"{env_file} line 2" in result.stderr and result.stderr.startswith("warning: QWENOPS_ENV_FILE: ")
    assert '"9000"' in result.stdout or "9000" in result.stdout  # the good lines still count


# ------------------------------------------------------------------------------------ tune --plan-only

TUNE = ["tune", "--slo-ttft-ms", "1000", "--slo-tpot-ms", "100", "--plan-only", "-p", "cpu-tiny"]


def _values(count: int) -> str:
    return ",".join(str(v) for v in range(1, count + 1))


@pytest.mark.parametrize(("extra", "field"), [
    (["--max-num-seqs", _values(100), "--max-num-batched-tokens", _values(100), "--max-model-len", _values(100)],
     "--max-num-seqs"),
    (["--max-num-seqs", _values(10_000), "--max-num-batched-tokens", _values(10_000)], "--max-num-seqs"),
    (["--max-num-batched-tokens", _values(17)], "--max-num-batched-tokens"),
    (["--max-num-seqs", _values(16), "--max-num-batched-tokens", _values(16), "--max-model-len", _values(2)],
     "--max-num-seqs"),
    (["--prompt-tokens", str(10**9)], "--prompt-tokens"),
    (["--output-tokens", str(10**9)], "--output-tokens"),
    (["--prompt-tokens", "9" * 5000], "--prompt-tokens"),
    (["--max-model-len", str(10**9)], "--max-model-len"),
    (["--max-model-len", "9" * 5000], "--max-model-len"),
    (["--max-num-seqs", "-1"], "--max-num-seqs"),
    (["--max-concurrency", str(2**70)], "--max-concurrency"),
    (["--requests", "-1"], "--requests"),
    (["--budget-min", "nan"], "--budget-min"),
    (["--budget-min", "1e309"], "--budget-min"),
    (["--port", "-1"], "--port"),
])
def test_tune_plan_only_is_bounded(extra: list[str], field: str) -> None:
    result = CliRunner().invoke(cli, [*TUNE, *extra], catch_exceptions=False)
    assert result.exit_code == 2, result.stderr
    one_line_error(result.stderr, field)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "0", "1e309"])
@pytest.mark.parametrize("option", ["--slo-ttft-ms", "--slo-tpot-ms"])
def test_tune_slo_must_be_a_finite_positive_number(option: str, value: str) -> None:
    args = [a if a != "1000" or option != "--slo-ttft-ms" else value for a in TUNE]
    if option == "--slo-tpot-ms":
        args[args.index("100")] = value
    result = CliRunner().invoke(cli, [*args], catch_exceptions=False)
    assert result.exit_code == 2, result.stderr
    one_line_error(result.stderr, option)


@pytest.mark.parametrize("kind", ["too-long", "loop", "file", "fifo"])
@pytest.mark.parametrize("variable", ["QWENOPS_PROFILES_DIR", "QWENOPS_STATE_DIR"])
def test_a_bad_directory_setting_is_one_line_and_exit_2(variable: str, kind: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x"
    if kind == "too-long":
        value = "/tmp/" + "d" * 5000
    elif kind == "loop":
        path.symlink_to(path)
        value = str(path / "more")
    elif kind == "file":
        path.write_text("")
        value = str(path)
    else:
        os.mkfifo(path)
        value = str(path)
    monkeypatch.setenv(variable, value)
    result = CliRunner().invoke(cli, ["profiles", "list"], catch_exceptions=False)
    if variable == "QWENOPS_STATE_DIR" and kind in ("file", "fifo"):
        assert result.exit_code == 0, result.stderr  # profiles list only looks for profiles/ under it
        return
    assert result.exit_code == 2, result.stderr
    one_line_error(result.stderr, variable)
    assert len(result.stderr) < 600


@pytest.mark.parametrize("option", ["--workload", "--probe-file"])
@pytest.mark.parametrize("bad_path", ["fifo", "directory", "/dev/zero", "too-long", "loop", "socket", "empty-path"],
                         indirect=True)
def test_a_bad_tune_file_is_one_line_and_exit_2(option: str, bad_path: str) -> None:
    result = CliRunner().invoke(cli, [*TUNE, option, bad_path], catch_exceptions=False)
    assert result.exit_code == 2, result.stderr
    one_line_error(result.stderr, option)
    assert len(result.stderr) < 600


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e309", "-1", "0", "9" * 400])
def test_troubleshoot_client_timeout_must_be_a_finite_positive_number(value: str) -> None:
    result = CliRunner().invoke(cli, ["troubleshoot", "--client-timeout", value, "--log", "/dev/null"],
                                catch_exceptions=False)
    assert result.exit_code == 2, result.stderr
    one_line_error(result.stderr, "--client-timeout")
