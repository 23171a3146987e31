"""The paths install writes, reached from the open root one name at a time, never through a symlink.

`Tree` opens the root once (following it if it is a symlink: it is the directory the caller named) and
walks down by descriptor (dir_fd, O_NOFOLLOW), checking each directory's owner and mode on the way; a
file is written to a new temporary file beside it and renamed over the old one (or linked, for a file
that must be new); only regular files are replaced or removed. Refusals name the path as the user sees
it. The rules: install/run.py's docstring, docs/security.md.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from qwenops.errors import BadInputError, QwenopsError, UnreachableError
from qwenops.untrusted import MAX_ENV_FILE_BYTES, printable

# Where install writes without --root (tests point it at a temporary directory).
_HOST_ROOT = "/"
_NEW_DIRECTORY_MODE = 0o755
# Directories are held as O_PATH descriptors: walking needs search permission only, as a path would.
_DIRECTORY = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO put where a file was expected must not hang the install.
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
# Errors that say the file system could not be reached (a dead NFS server, a failing disk): exit 3.
_UNREACHABLE = frozenset({errno.EIO, errno.ETIMEDOUT, errno.EHOSTDOWN, errno.EHOSTUNREACH, errno.ENOTCONN,
                          errno.ESTALE})

def under(root: Path | None, path: str) -> Path:
    return Path(path) if root is None else root / path.lstrip("/")


def kind(mode: int) -> str:
    kinds = ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISREG, "a regular file"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _unchanged(a: os.stat_result, b: os.stat_result) -> bool:
    return _same(a, b) and (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns)  # its mode may be made 0600


def _read_env(dir_fd: int, name: str) -> tuple[bytes, os.stat_result]:
    """NAME in DIR_FD: its first MAX_ENV_FILE_BYTES + 1 bytes and its stat, opened without following a
    symlink or waiting on a FIFO. Raises OSError (PermissionError: this user may not read it)."""
    fd = os.open(name, _READ, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        chunks, size = [], 0
        while stat.S_ISREG(st.st_mode) and size <= MAX_ENV_FILE_BYTES:
            chunk = os.read(fd, MAX_ENV_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks), st
    finally:
        os.close(fd)


def _remove_tree(parent_fd: int, name: str) -> None:
    """NAME in PARENT_FD and all it holds, each entry reached by its directory's descriptor: a symlink
    inside is removed, never followed (shutil.rmtree takes dir_fd from Python 3.11 only)."""
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    try:
        with os.scandir(fd) as entries:
            found = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
        for entry, is_directory in found:
            if is_directory:
                _remove_tree(fd, entry)
            else:
                os.unlink(entry, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)


@dataclass(frozen=True)
class EnvFile:
    """An existing env file, checked: its text and the stat it was read with (None: this user may not read it)."""

    st: os.stat_result
    text: str | None


class Tree:
    """The root and the paths install writes under it, each reached from the open root one name at a time,
    never through a symlink; refusals name the path as the user sees it."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self.field = "--root" if root is not None else "host"
        euid = os.geteuid()
        self.owners = {0, euid}
        self.groups = {0, os.getegid()}
        self.trusted = "root" if euid == 0 else f"root and uid {euid} (this user)"

    def shown(self, path: str) -> str:
        return str(under(self.root, path))

    def refusal(self, path: str, what: str, hint: str | None = None) -> BadInputError:
        return BadInputError(f"{self.shown(path)} {what}", field=self.field, hint=hint)

    def os_error(self, path: str, exc: OSError, doing: str) -> QwenopsError:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.ELOOP:
            return self.refusal(path, "is a symlink (it appeared while install was checking it)",
                                hint="replace it with the real directory or file, or remove it")
        if exc.errno in _UNREACHABLE:
            return UnreachableError(f"cannot {doing} {self.shown(path)}: {reason}", field=self.field)
        hint = None
        if isinstance(exc, PermissionError):
            hint = "choose a directory this user can write" if self.root is not None else "run it as root"
        return BadInputError(f"cannot {doing} {self.shown(path)}: {reason}", field=self.field, hint=hint)

    def open_root(self) -> int:
        base = _HOST_ROOT if self.root is None else str(self.root)
        try:
            return os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the named root may be a symlink
        except FileNotFoundError:
            raise BadInputError(f"{base} does not exist", field=self.field, hint="create it first") from None
        except NotADirectoryError:
            raise BadInputError(f"{base} is not a directory", field=self.field, hint="name a directory") from None
        except OSError as exc:
            raise self.os_error("/", exc, "open") from None

    def lstat(self, dir_fd: int, name: str, path: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self.os_error(path, exc, "check") from None

    def symlink(self, dir_fd: int, name: str, path: str) -> BadInputError:
        try:
            target = printable(os.readlink(name, dir_fd=dir_fd), keep_newlines=False)
        except OSError:
            target = "?"
        target = target if len(target) <= 200 else target[:200] + "…"
        where = "/" if self.root is None else str(self.root)
        return self.refusal(path, f"is a symlink (to {target}): install follows no symlink under {where}",
                            hint="replace it with the real directory or file, or remove it")

    def check_owner(self, path: str, st: os.stat_result) -> None:
        if st.st_uid not in self.owners:
            raise self.refusal(path, f"is owned by uid {st.st_uid}: install trusts only what {self.trusted} own",
                               hint="chown it to root, or move it away and install writes a new one")

    def check_directory(self, dir_fd: int, name: str, path: str, st: os.stat_result) -> None:
        if stat.S_ISLNK(st.st_mode):
            raise self.symlink(dir_fd, name, path)
        if not stat.S_ISDIR(st.st_mode):
            raise self.refusal(path, f"is {kind(st.st_mode)}, not a directory", hint="move it away")
        self.check_owner(path, st)
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o002 or (mode & 0o020 and st.st_gid not in self.groups):
            who = "others" if mode & 0o002 else f"group {st.st_gid}"
            raise self.refusal(path, f"is writable by {who} (mode {mode:o}): they could swap what install writes "
                               "there", hint=f"chmod go-w {self.shown(path)}")

    def check_file(self, dir_fd: int, name: str, path: str, st: os.stat_result) -> None:
        """PATH may be replaced or removed: a regular file (the name goes; the inode is never written)."""
        if stat.S_ISLNK(st.st_mode):
            raise self.symlink(dir_fd, name, path)
        if not stat.S_ISREG(st.st_mode):
            raise self.refusal(path, f"is {kind(st.st_mode)}, not a file install writes", hint="move it away")

    def make_directory(self, dir_fd: int, name: str, path: str) -> os.stat_result:
        """NAME made in DIR_FD, 0755 whatever the umask (by its descriptor, never by a name that could be
        swapped); one made meanwhile by another is returned as it is, for the caller's checks."""
        try:
            os.mkdir(name, _NEW_DIRECTORY_MODE, dir_fd=dir_fd)
        except FileExistsError:
            pass
        except OSError as exc:
            raise self.os_error(path, exc, "create") from None
        else:
            try:
                made = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            except OSError as exc:
                raise self.os_error(path, exc, "open") from None
            try:
                if os.fstat(made).st_uid == os.geteuid():
                    os.fchmod(made, _NEW_DIRECTORY_MODE)
            except OSError as exc:
                raise self.os_error(path, exc, "chmod") from None
            finally:
                os.close(made)
        st = self.lstat(dir_fd, name, path)
        if st is None:
            raise self.refusal(path, "vanished while install was making it", hint="run install again")
        return st

    @contextlib.contextmanager
    def parent(self, path: str, *, create: bool) -> Iterator[int | None]:
        """The open directory that holds PATH, each directory on the way from the root checked (and with
        CREATE made, 0755); None when one is missing and CREATE is false (a plan: it will be made)."""
        parts = path.strip("/").split("/")
        fd = self.open_root()
        try:
            for depth, name in enumerate(parts[:-1]):
                here = "/" + "/".join(parts[: depth + 1])
                st = self.lstat(fd, name, here)
                if st is None:
                    if not create:
                        yield None
                        return
                    st = self.make_directory(fd, name, here)
                self.check_directory(fd, name, here, st)
                try:
                    child = os.open(name, _DIRECTORY, dir_fd=fd)
                except OSError as exc:
                    raise self.os_error(here, exc, "open") from None
                os.close(fd)
                fd = child
                if not _same(os.fstat(fd), st):
                    raise self.refusal(here, "was replaced while install was checking it", hint="run install again")
            yield fd
        finally:
            os.close(fd)

    def exists(self, path: str) -> bool:
        with self.parent(path, create=False) as fd:
            return fd is not None and self.lstat(fd, path.rsplit("/", 1)[1], path) is not None

    def inspect_file(self, path: str) -> os.stat_result | None:
        """PATH's stat when it is a file install may replace, None when it is not there."""
        name = path.rsplit("/", 1)[1]
        with self.parent(path, create=False) as fd:
            if fd is None:
                return None
            st = self.lstat(fd, name, path)
            if st is not None:
                self.check_file(fd, name, path, st)
            return st

    def env_file(self, path: str, *, dry_run: bool) -> EnvFile | None:
        """The existing env file at PATH, checked and read (None: none there). A dry run as a user who may
        not read it gets its stat alone; anything else that stops the read is bad input."""
        name = path.rsplit("/", 1)[1]
        with self.parent(path, create=False) as fd:
            if fd is None:
                return None
            st = self.lstat(fd, name, path)
            if st is None:
                return None
            self.check_env(fd, name, path, st)
            try:
                data, opened = _read_env(fd, name)
            except PermissionError as exc:
                if dry_run:
                    return EnvFile(st, None)
                raise BadInputError(f"cannot read {self.shown(path)}: {exc.strerror or exc}", field="user",
                                    hint="run it as root") from None
            except OSError as exc:
                raise self.os_error(path, exc, "read") from None
        if not _same(opened, st):
            raise self.refusal(path, "was replaced while install was reading it", hint="run install again")
        self.check_env(-1, name, path, opened)
        return EnvFile(opened, self.env_text(path, data))

    def check_env(self, dir_fd: int, name: str, path: str, st: os.stat_result) -> None:
        keep = "move it away and install writes a new env file with a new key"
        if stat.S_ISLNK(st.st_mode):
            raise self.symlink(dir_fd, name, path)
        if not stat.S_ISREG(st.st_mode):
            raise self.refusal(path, f"is {kind(st.st_mode)}: install keeps a key only in a regular file",
                               hint=keep)
        self.check_owner(path, st)
        if st.st_nlink > 1:
            raise self.refusal(path, f"has {st.st_nlink} hard links: another name shares its key",
                               hint=f"remove the other links, or {keep}")
        if st.st_size > MAX_ENV_FILE_BYTES:
            raise self.refusal(path, f"is {st.st_size} bytes, more than an env file's {MAX_ENV_FILE_BYTES}",
                               hint=keep)

    def env_text(self, path: str, data: bytes) -> str:
        hint = "fix it, or move it away and install writes a new env file with a new key"
        if len(data) > MAX_ENV_FILE_BYTES:
            raise self.refusal(path, f"is more than an env file's {MAX_ENV_FILE_BYTES} bytes", hint=hint)
        if b"\0" in data:
            raise self.refusal(path, "holds a NUL byte (systemd stops reading there)", hint=hint)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise self.refusal(path, "is not UTF-8 text", hint=hint) from None

    def write(self, path: str, text: str, mode: int, *, new: bool = False,
              expect: os.stat_result | None = None) -> None:
        """PATH holding TEXT with MODE: a new temporary file beside it, renamed over it. NEW: linked instead,
        so a file that appeared since the plan is never replaced; EXPECT: the file must still be that one."""
        name = path.rsplit("/", 1)[1]
        with self.parent(path, create=True) as fd:
            assert fd is not None
            st = self.lstat(fd, name, path)
            if st is not None and new:
                raise self.refusal(path, "appeared while install was writing it", hint="run install again")
            if st is not None:
                self.check_file(fd, name, path, st)
            if expect is not None and (st is None or not _unchanged(st, expect)):
                raise self.refusal(path, "changed while install was writing it", hint="run install again")
            temporary = f".{name}.{secrets.token_hex(8)}.new"
            created = False
            try:
                file_fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                  mode, dir_fd=fd)
                created = True
                try:
                    os.fchmod(file_fd, mode)  # past the umask; it never had a wider one
                    data = memoryview(text.encode("utf-8"))
                    while data:
                        data = data[os.write(file_fd, data):]
                    os.fsync(file_fd)
                finally:
                    os.close(file_fd)
                if new:
                    os.link(temporary, name, src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
                else:
                    os.replace(temporary, name, src_dir_fd=fd, dst_dir_fd=fd)
            except FileExistsError:
                raise self.refusal(path, "appeared while install was writing it", hint="run install again") from None
            except OSError as exc:
                raise self.os_error(path, exc, "write") from None
            finally:
                if created:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(temporary, dir_fd=fd)
            with contextlib.suppress(OSError):  # the rename on disk too; best effort
                directory = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)

    def chmod_private(self, path: str, expect: os.stat_result) -> None:
        name = path.rsplit("/", 1)[1]
        with self.parent(path, create=False) as fd:
            if fd is None:
                raise self.refusal(path, "vanished while install was planning", hint="run install again")
            try:
                file_fd = os.open(name, _READ, dir_fd=fd)
            except OSError as exc:
                raise self.os_error(path, exc, "open") from None
            try:
                if not _same(os.fstat(file_fd), expect):
                    raise self.refusal(path, "was replaced while install was planning", hint="run install again")
                os.fchmod(file_fd, 0o600)
            except OSError as exc:
                raise self.os_error(path, exc, "chmod") from None
            finally:
                os.close(file_fd)

    def remove(self, path: str, expect: os.stat_result, *, tree: bool) -> None:
        name = path.rsplit("/", 1)[1]
        with self.parent(path, create=False) as fd:
            st = None if fd is None else self.lstat(fd, name, path)
            if fd is None or st is None:
                return  # gone already
            if not _same(st, expect) or stat.S_IFMT(st.st_mode) != stat.S_IFMT(expect.st_mode):
                raise self.refusal(path, "was replaced while install was planning", hint="run it again")
            try:
                if tree:
                    _remove_tree(fd, name)
                else:
                    os.unlink(name, dir_fd=fd)
            except OSError as exc:
                raise self.os_error(path, exc, "remove") from None
            except RecursionError:
                raise self.refusal(path, "is nested too deep to remove", hint="remove it yourself") from None
