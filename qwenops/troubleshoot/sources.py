"""Where a log comes from: a file, stdin, journald (`journalctl -u UNIT -o cat`) or `docker logs`.

Each source yields raw bytes in chunks; nothing reads a whole log into memory. A missing tool
(no journalctl on a Docker host, no docker CLI on a systemd host) is one line and exit 3.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from qwenops.errors import BadInputError, UnreachableError

_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class LogSource:
    """A log to read: what to call it, and how to open it as a byte stream."""

    kind: str  # "file", "stdin", "journal", "docker"
    name: str  # the path, unit or container
    option: str  # the CLI option that named it, for errors

    @property
    def label(self) -> str:
        return {"file": f"log {self.name}", "stdin": "log on stdin", "journal": f"journal of unit {self.name}",
                "docker": f"docker logs of {self.name}"}[self.kind]


def file_source(path: str) -> LogSource:
    return LogSource("stdin", "-", "--log") if path == "-" else LogSource("file", path, "--log")


@contextlib.contextmanager
def open_source(source: LogSource) -> Iterator[IO[bytes]]:
    if source.kind == "stdin":
        yield sys.stdin.buffer
    elif source.kind == "file":
        with _open_file(Path(source.name)) as stream:
            yield stream
    else:
        argv = (["journalctl", "-u", source.name, "-o", "cat", "--no-pager"] if source.kind == "journal"
                else ["docker", "logs", source.name])
        with _command_output(argv, source) as stream:
            yield stream


@contextlib.contextmanager
def _open_file(path: Path) -> Iterator[BinaryIO]:
    if path.is_dir():
        raise BadInputError(f"{path} is a directory", field="--log", hint="name the log file itself")
    try:
        stream = path.open("rb")
    except FileNotFoundError:
        raise BadInputError(f"{path} does not exist", field="--log") from None
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror}", field="--log") from None
    with stream:
        head = stream.peek(_SNIFF_BYTES)[:_SNIFF_BYTES] if hasattr(stream, "peek") else b""
        if not head:
            raise BadInputError(f"{path} is empty", field="--log", hint="point --log at the server's output")
        if b"\0" in head:  # text logs have no NUL bytes; a core dump, an image or a tarball does
            raise BadInputError(f"{path} is a binary file, not a log", field="--log")
        yield stream


@contextlib.contextmanager
def _command_output(argv: list[str], source: LogSource) -> Iterator[IO[bytes]]:
    tool = argv[0]
    if shutil.which(tool) is None:
        raise UnreachableError(f"{tool} is not installed here, so the {source.label} cannot be read",
                               field=source.option, hint="save the log to a file and pass --log FILE")
    # docker logs writes the container's stderr to its own stderr: merge both, as the server printed them.
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    assert process.stdout is not None
    try:
        yield process.stdout
    finally:
        process.stdout.close()
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        code = process.wait()
    if code not in (0, -9):
        raise UnreachableError(f"`{' '.join(argv)}` exited with status {code}", field=source.option,
                               hint=f"check that the {source.kind} name is right and that you may read it")
