"""Reading a file that qwenops did not write, or that someone else could have replaced: profiles, env files,
probe files, workloads, state records, model headers. Only a regular file is read, and never by waiting.

`open()` of a named pipe waits for a writer, for ever; a device (/dev/zero, a tty) never ends. Checking
with `stat` before opening leaves a moment in which a pipe can be put where the file was. So the file is
opened with O_NONBLOCK (a pipe or a device opens at once, and a regular file reads as ever) and checked on
the descriptor it opened (`fstat`): what is read is what was checked. Logs are the one exception, read
from pipes on purpose (`troubleshoot/sources.py`, with a deadline).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

__all__ = ["NotRegularFile", "kind_of", "open_regular", "read_capped"]


class NotRegularFile(OSError):
    """The path names a directory, a named pipe, a socket or a device: `kind` says which, in words."""

    def __init__(self, kind: str) -> None:
        super().__init__(errno.EISDIR if kind == "a directory" else errno.EINVAL, f"is {kind}, not a regular file")
        self.kind = kind

    def instead_of(self, what: str) -> str:
        """"is a named pipe, not a probe file": what was found where WHAT was expected."""
        return f"is {self.kind}, not {what}"


def kind_of(mode: int) -> str:
    """What a file of MODE is, in words ("a named pipe"), for a message."""
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return kind
    return "a special file"  # a door or whiteout: no other kind exists on the systems qwenops runs on


def open_regular(path: Path | str) -> BinaryIO:
    """PATH opened for reading in binary, if it is a regular file (symlinks followed). OSError otherwise:
    `NotRegularFile` with what it is ("is a named pipe, not a regular file"), EINVAL for a path holding a
    NUL byte (os.open's ValueError), or whatever opening raised."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except ValueError:  # "embedded null byte": text from a file or a server, not a path
        raise OSError(errno.EINVAL, "the path holds a NUL byte") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(kind_of(mode))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_capped(path: Path | str, cap: int) -> bytes:
    """At most CAP + 1 bytes of the regular file PATH (one more than CAP: the caller tells "too large"
    from "exactly CAP"). OSError as `open_regular` raises it, or from the read."""
    with open_regular(path) as file:
        return file.read(cap + 1)
