"""Where a log comes from: a file, stdin, journald (`journalctl --unit=UNIT -o cat`) or `docker logs`.

Every source is untrusted and bounded (qwenops.untrusted): a regular file is read from its last
MAX_LOG_BYTES and streamed; anything else (stdin, a FIFO, a device, /proc, a tool's output) has no size
to seek by, so it is read to its end within a deadline, keeping only its last MAX_LOG_BYTES, and more
than MAX_LOG_READ_BYTES in all is a runaway. Empty, binary or compressed data is refused the same way
whether it came in a file or on stdin. A unit or container name is checked before any tool runs, and
follows the tool's options, so it can never be read as one (`--docker=--help`).

Errors are one line naming the option: bad input (exit 2) for what the user named, unreachable (exit 3)
for a tool that is missing, fails, or does not finish within TOOL_DEADLINE_S.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, cast

from qwenops import untrusted
from qwenops.errors import BadInputError, QwenopsError, UnreachableError
from qwenops.units import GIB, MIB

_SNIFF_BYTES = 8192
_CHUNK = 1 << 16
_STDIN_HINT = "pipe a log into it, e.g. journalctl -u vllm -o cat | qwenops troubleshoot --log -, or name a file"

# Docker's own rule for a container name (an ID, 64 hex digits, matches it too).
CONTAINER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
# A systemd unit name or the glob journalctl -u takes: systemd's characters (letters, digits, ":-_.\@")
# and the glob's "*?[]"; never a leading "-", so no name reads as an option (only systemd's own -.mount
# and -.slice start so, and they are no server).
UNIT_NAME = re.compile(r"[A-Za-z0-9:_.\\@*?\[\]][A-Za-z0-9:_.\\@*?\[\]-]*")
_NAME_MAX = 255

# Compressed data and archives, by their magic bytes: the log is inside, not this.
_MAGIC = (
    (re.compile(rb"\x1f\x8b"), "gzip-compressed", "zcat"),
    (re.compile(rb"\x28\xb5\x2f\xfd"), "zstd-compressed", "zstdcat"),
    (re.compile(rb"\xfd7zXZ\x00"), "xz-compressed", "xzcat"),
    (re.compile(rb"BZh[1-9]1AY&SY"), "bzip2-compressed", "bzcat"),
    (re.compile(rb"\x04\x22\x4d\x18"), "lz4-compressed", "lz4cat"),
    (re.compile(rb"PK\x03\x04"), "a zip archive", "unzip -p"),
)


@dataclass(frozen=True)
class LogSource:
    """A log to read: what to call it, and how to open it as a byte stream."""

    kind: str  # "file", "stdin", "journal", "docker"
    name: str  # the path, unit or container
    option: str  # the CLI option that named it, for errors

    def __post_init__(self) -> None:
        if self.kind == "journal":
            check_unit(self.name, option=self.option)
        elif self.kind == "docker":
            check_container(self.name, option=self.option)
        elif self.kind == "file" and not self.name:
            raise BadInputError("the path is empty", field=self.option, hint="name a log file, or - for stdin")

    @property
    def label(self) -> str:
        return {"file": f"log {shown(self.name)}", "stdin": "log on stdin", "journal": f"journal of unit {self.name}",
                "docker": f"docker logs of {self.name}"}[self.kind]


def shown(path: str) -> str:
    """PATH as a message shows it: a very long one (ENAMETOOLONG is 4,096 bytes) keeps its two ends."""
    return path if len(path) <= 160 else f"{path[:80]}…{path[-60:]} ({len(path):,} characters)"


def check_unit(name: str, *, option: str = "--journal") -> str:
    """NAME if it is a systemd unit name (or a glob of one) journalctl can be given; else bad input."""
    if not name:
        raise BadInputError("the unit name is empty", field=option, hint="name the server's unit, e.g. vllm.service")
    if len(name) > _NAME_MAX or not UNIT_NAME.fullmatch(name):
        raise BadInputError(f"{name[:80]!r} is not a systemd unit name", field=option,
                            hint="letters, digits and ':-_.\\@', a glob may add '*?[]'; not starting with '-', "
                                 f"at most {_NAME_MAX} characters")
    return name


def check_container(name: str, *, option: str = "--docker") -> str:
    """NAME if it is a Docker container name or ID; else bad input."""
    if not name:
        raise BadInputError("the container name is empty", field=option, hint="name the server's container")
    if len(name) > _NAME_MAX or not CONTAINER_NAME.fullmatch(name):
        raise BadInputError(f"{name[:80]!r} is not a container name", field=option,
                            hint="letters, digits and '_.-', starting with a letter or digit; see `docker ps -a`")
    return name


def file_source(path: str) -> LogSource:
    return LogSource("stdin", "-", "--log") if path == "-" else LogSource("file", path, "--log")


@contextlib.contextmanager
def open_source(source: LogSource) -> Iterator[IO[bytes]]:
    if source.kind == "stdin":
        with _open_stdin(source) as stream:
            yield stream
    elif source.kind == "file":
        fd = _open_path(source)
        try:
            yield _from_fd(fd, source, what=shown(source.name))
        finally:
            os.close(fd)
    else:
        argv = (["journalctl", "--output=cat", "--no-pager", f"--lines={untrusted.LOG_TOOL_TAIL_LINES}",
                 f"--unit={check_unit(source.name, option=source.option)}"] if source.kind == "journal"
                else ["docker", "logs", "--tail", str(untrusted.LOG_TOOL_TAIL_LINES), "--",
                      check_container(source.name, option=source.option)])
        yield _command_output(argv, source)


# ------------------------------------------------------------------------------------- --log FILE


def _open_path(source: LogSource) -> int:
    """An fd open for reading: O_NONBLOCK, so a FIFO nobody writes to is empty instead of a hang, and
    O_NOCTTY, so a terminal named as a log never becomes this process's controlling terminal."""
    path, what = source.name, shown(source.name)
    try:
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise BadInputError(f"{what} does not exist", field=source.option) from None
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket, or a device with nothing behind it
            raise BadInputError(f"{what} is a socket or an absent device, not a log", field=source.option) from None
        if exc.errno == errno.ENAMETOOLONG:
            raise BadInputError(f"the path is too long ({len(path):,} characters)", field=source.option) from None
        raise BadInputError(f"cannot read {what}: {exc.strerror or exc}", field=source.option) from None


def _from_fd(fd: int, source: LogSource, *, what: str) -> IO[bytes]:
    """The log on FD, refused if it is a directory, a terminal, empty, binary or compressed."""
    error = _BadLog(what, source.option)
    try:
        info = os.fstat(fd)
    except OSError as exc:
        raise error(f"cannot read it: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise error("is a directory", hint="name the log file itself")
    if os.isatty(fd):
        raise error("is a terminal, not a log", hint=_STDIN_HINT if source.kind == "stdin" else None)
    if stat.S_ISREG(info.st_mode) and info.st_size > 0:
        start = max(0, info.st_size - untrusted.MAX_LOG_BYTES)
        try:
            head = os.pread(fd, _SNIFF_BYTES, start)
        except OSError as exc:
            raise error(f"cannot be read: {exc.strerror}") from None
        _check_head(head, error)
        os.lseek(fd, start, os.SEEK_SET)
        return io.BufferedReader(_FileReader(fd, untrusted.MAX_LOG_BYTES, error), buffer_size=_CHUNK)
    # A pipe, a FIFO, a device, a /proc file: no size to trust, and reading may block.
    was_blocking = os.get_blocking(fd)
    os.set_blocking(fd, False)
    try:
        data = _drain(fd, deadline_s=untrusted.LOG_PIPE_DEADLINE_S, error=error, sniff=True)
    finally:
        with contextlib.suppress(OSError):
            os.set_blocking(fd, was_blocking)
    return io.BytesIO(data)


@contextlib.contextmanager
def _open_stdin(source: LogSource) -> Iterator[IO[bytes]]:
    error = _BadLog("stdin", source.option)
    stream = sys.stdin
    if stream is None or stream.closed:
        raise error("is closed", hint=_STDIN_HINT)
    try:
        fd = stream.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):
        fd = -1
    if fd < 0:  # a stream without a file (a test harness's): read it as a pipe, without a deadline
        buffer = cast("IO[bytes]", getattr(stream, "buffer", stream))
        data = _read_all(buffer, error)
        _check_head(data[:_SNIFF_BYTES], error)
        yield io.BytesIO(data)
        return
    try:
        own = os.dup(fd)
    except OSError:
        raise error("is closed", hint=_STDIN_HINT) from None
    try:
        yield _from_fd(own, source, what="stdin")
    finally:
        os.close(own)


class _BadLog:
    """Makes the one-line error for one log: 'WHAT MESSAGE' naming the option."""

    def __init__(self, what: str, option: str, *, unreachable: bool = False) -> None:
        self.what, self.option, self.unreachable = what, option, unreachable

    def __call__(self, message: str, *, hint: str | None = None) -> QwenopsError:
        kind = UnreachableError if self.unreachable else BadInputError
        return kind(f"{self.what} {message}", field=self.option, hint=hint)


class _FileReader(io.RawIOBase):
    """A regular file's bytes from where it was positioned, at most LIMIT of them (a log that grows while
    it is read stops there); a read error is the log's one-line error, not an OSError."""

    def __init__(self, fd: int, limit: int, error: _BadLog) -> None:
        super().__init__()
        self._fd, self._left, self._error = fd, limit, error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        try:
            data = os.read(self._fd, min(len(buffer), self._left))
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise self._error(f"cannot be read: {exc.strerror}") from None
        buffer[:len(data)] = data
        self._left -= len(data)
        return len(data)


def _check_head(head: bytes, error: _BadLog) -> None:
    if not head:
        raise error("is empty", hint="point --log at the server's output")
    for magic, kind, tool in _MAGIC:
        if magic.match(head):
            raise error(f"is {kind} data, not a log",
                        hint=f"decompress it first: {tool} FILE | qwenops troubleshoot --log -")
    if b"\0" in head:  # text logs have no NUL bytes; a core dump, an image or a tarball does
        raise error("is binary data, not a log")


class _Tail:
    """The last MAX_LOG_BYTES of a stream read to its end; more than MAX_LOG_READ_BYTES is a runaway."""

    def __init__(self, error: _BadLog) -> None:
        self.chunks: deque[bytes] = deque()
        self.kept = 0
        self.total = 0
        self.error = error

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if self.total > untrusted.MAX_LOG_READ_BYTES:
            raise self.error(f"sent more than {untrusted.MAX_LOG_READ_BYTES / GIB:g} GiB without ending",
                             hint="save the log to a file and pass --log FILE: qwenops reads its last "
                                  f"{untrusted.MAX_LOG_BYTES // MIB} MiB")
        self.chunks.append(chunk)
        self.kept += len(chunk)
        while self.chunks and self.kept - len(self.chunks[0]) >= untrusted.MAX_LOG_BYTES:
            self.kept -= len(self.chunks.popleft())

    def data(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data[-untrusted.MAX_LOG_BYTES:] if len(data) > untrusted.MAX_LOG_BYTES else data


def _read_all(stream: IO[bytes], error: _BadLog) -> bytes:
    tail = _Tail(error)
    while True:
        try:
            chunk = stream.read(_CHUNK)
        except OSError as exc:
            raise error(f"cannot be read: {exc.strerror or exc}") from None
        if not chunk:
            return tail.data()
        tail.add(chunk)


def _drain(fd: int, *, deadline_s: float, error: _BadLog, on_timeout: str | None = None,
           sniff: bool = False) -> bytes:
    """Read the non-blocking FD to its end, or raise ERROR when DEADLINE_S pass first. SNIFF: refuse
    empty, binary or compressed data by its first bytes, as soon as they are in (/dev/zero never ends)."""
    tail = _Tail(error)
    head = b"" if sniff else None
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    end = time.monotonic() + deadline_s
    timeout = error(on_timeout or f"did not end within {deadline_s:g} s",
                    hint="save the log to a file and pass --log FILE")
    while True:
        # Poll first: a FIFO no writer has opened yet reads as an empty end, but polls as "not yet".
        left = end - time.monotonic()
        if left <= 0 or not poller.poll(max(1, int(left * 1000))):
            raise timeout
        try:
            chunk = os.read(fd, _CHUNK)
        except BlockingIOError:
            continue
        except OSError as exc:
            raise error(f"cannot be read: {exc.strerror or exc}") from None
        if head is not None and (not chunk or len(head) + len(chunk) >= _SNIFF_BYTES):
            _check_head((head + chunk)[:_SNIFF_BYTES], error)
            head = None
        elif head is not None:
            head += chunk
        if not chunk:
            return tail.data()
        tail.add(chunk)


# ---------------------------------------------------------------------------- journalctl, docker logs


def _command_output(argv: list[str], source: LogSource) -> IO[bytes]:
    """What ARGV printed (its last MAX_LOG_BYTES), once it has ended with status 0 within TOOL_DEADLINE_S."""
    tool = argv[0]
    if shutil.which(tool) is None:
        raise UnreachableError(f"{tool} is not installed here, so the {source.label} cannot be read",
                               field=source.option, hint="save the log to a file and pass --log FILE")
    deadline = untrusted.TOOL_DEADLINE_S
    command = " ".join(argv)
    error = _BadLog(f"`{tool}`", source.option, unreachable=True)
    try:
        # docker logs writes the container's stderr to its own stderr: merge both, as the server printed them.
        # Its own session, so the whole group (a child that keeps the pipe open too) is ended with it.
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    except OSError as exc:
        raise UnreachableError(f"cannot run {tool}: {exc.strerror or exc}", field=source.option) from None
    assert process.stdout is not None
    started = time.monotonic()
    try:
        fd = process.stdout.fileno()
        os.set_blocking(fd, False)
        data = _drain(fd, deadline_s=deadline, error=error,
                      on_timeout=f"did not finish within {deadline:g} s (reading the {source.label})")
        try:
            code = process.wait(timeout=max(0.1, deadline - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            raise error(f"did not finish within {deadline:g} s (reading the {source.label})") from None
    finally:
        process.stdout.close()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
    if code != 0:
        said = _last_line(data)
        raise UnreachableError(f"`{command}` exited with status {code}" + (f": {said}" if said else ""),
                               field=source.option, hint=_failure_hint(source, said))
    return io.BytesIO(data)


def _last_line(data: bytes) -> str:
    for line in reversed(data[-4096:].splitlines()):
        text = untrusted.printable(line.decode("utf-8", "replace"), keep_newlines=False).strip()
        if text:
            return text[:300]
    return ""


def _failure_hint(source: LogSource, said: str) -> str:
    lowered = said.lower()
    if source.kind == "docker":
        if "cannot connect to the docker daemon" in lowered or "permission denied" in lowered:
            return "is the Docker daemon running, and may this user use it (the docker group)?"
        return "check the container's name (`docker ps -a`)"
    if "permission" in lowered or "access" in lowered:
        return "may this user read the journal? (root, or the systemd-journal or adm group)"
    return "check the unit's name (`systemctl list-units --all 'vllm*'`)"
