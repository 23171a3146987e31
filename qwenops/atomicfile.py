"""Files qwenops writes (`render -o`, `doctor --save-probe`, the state directory's records and derived
profiles): whole or not at all, with their final mode from their first byte, never through a symlink.

Why not `Path.write_text` and `chmod`: both follow a symlink, so a link planted where the file goes (or
where its fixed-name temporary goes) makes whoever runs qwenops, often root, overwrite the link's target
and change its mode; and the file exists with the umask's mode (0644) until the chmod, a window in which
an env file's API key is readable by all. Here the bytes go to a new temporary file beside the target,
created exclusively (O_EXCL|O_NOFOLLOW, a random name) with the final mode, then renamed over the target:
a rename replaces a directory entry and never writes through a link, and a reader sees the old file or
the new one, never half of one. (install's tree writer does the same by directory descriptor, with the
owner and mode checks a root-owned tree needs.)
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path


class TargetRefused(OSError):
    """What is at the target is not a file qwenops may replace; `hint` says what to do instead."""

    hint = "give the path of a regular file"


class LinkRefused(TargetRefused):
    """The target is a symbolic link, and the caller asked for a plain file there."""

    hint = "remove the link, or give the path of the file it points to"


def write_atomic(path: Path, text: str, *, mode: int, over_link: bool = False) -> None:
    """PATH holding TEXT (UTF-8) with MODE. An existing symlink at PATH is refused (LinkRefused) unless
    OVER_LINK, where the link itself is replaced; its target is never touched. Anything else that is not a regular
    file is refused (TargetRefused): a rename would replace a device, a named pipe or a socket with a file, and
    `sudo qwenops render ... -o /dev/null` would have replaced the system's /dev/null (audit 8). Raises OSError."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        found = None
    if found is not None and stat.S_ISLNK(found.st_mode):
        if not over_link:
            raise LinkRefused(errno.ELOOP, "it is a symbolic link (qwenops writes a file there, never through a link)")
    elif found is not None and not stat.S_ISREG(found.st_mode):
        from qwenops.readfile import kind_of

        raise TargetRefused(errno.EINVAL, f"it is {kind_of(found.st_mode)} (qwenops writes a regular file there, and "
                            "never replaces anything else)")
    temporary = path.parent / f".{path.name[:200]}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)  # past the umask; the file never had a wider mode
            data = memoryview(text.encode("utf-8"))
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
        temporary.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
