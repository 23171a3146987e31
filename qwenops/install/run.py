"""`qwenops install|uninstall systemd`: put the rendered unit on a host and start it, or take it away.

Install writes four files and runs four commands, in this order, each one an `Action` in the
result (`--dry-run` returns the same list and does nothing):

    /etc/systemd/system/qwenops.service     the unit `render systemd` prints (0644)
    /etc/qwenops/qwenops.env                QWENOPS_API_KEY (a new random key) and overrides (0600, root);
                                            an existing file is kept, its key untouched, its mode made 0600
    /etc/sysusers.d/qwenops.conf            the service user and its video/render groups
    /etc/modules-load.d/qwenops-nvidia.conf nvidia-uvm at boot, so the unit's device list finds it
    systemd-sysusers, modprobe nvidia-uvm (best effort), systemctl daemon-reload, systemctl enable --now

`--gateway` adds the relay beside it: /etc/systemd/system/qwenops-gateway.service (the unit
`render gateway-systemd` prints, 0644, written after qwenops.service) and a QWENOPS_GATEWAY_TOKEN in
the env file (a new random one, never shown: a new file gets it with the key; an existing file
without one gets it added, every other line kept; an existing token is kept), then
`systemctl enable --now --no-block qwenops-gateway.service` after qwenops.service's.

`--root DIR` writes under DIR and runs nothing (image builds, tests): systemd-sysusers.service
creates the user at that system's first boot. Uninstall stops and disables the units (the gateway's
too whenever it is there, flag or not) and removes the files; `--purge` also removes the env file
(the key and the token), the state and cache directories (the weights) and the user.

Install runs as root and writes where others may have left things, so it plans first and acts
after: every path is checked before anything is written, removed or run, a refusal (exit 2, one
line naming the path and what is wrong) leaves everything as it was, and `--dry-run` shows the same
refusals. The rules (docs/deploy.md, docs/security.md):

- The root (`/`, or `--root DIR`: absolute, no control characters) is opened once, following a
  symlink if it is one: it is the directory the caller named. Everything under it is reached from
  that open directory one name at a time (dir_fd, O_NOFOLLOW), never through a symlink: a symlink
  under the root is refused, and so is a directory owned by anyone but root (or this user), or
  writable by others or by a group that is not root's (or this user's).
- A file is written to a new temporary file beside it (O_CREAT|O_EXCL|O_NOFOLLOW, its final mode from
  the start) and renamed over the old one; a new env file is linked into place instead, so one that
  appeared meanwhile is never overwritten. Only regular files are replaced or removed.
- A kept env file must be a regular file with one link, owned by root (or this user), UTF-8 without
  NUL and at most MAX_ENV_FILE_BYTES; its mode is made 0600.
- The key and the token are set as data. The env file is parsed the way systemd's EnvironmentFile=
  reads it (before and since systemd 254, which stopped continuing a comment on a trailing
  backslash) and the way qwenops reads it (python-dotenv): the last assignment is replaced and the
  earlier ones removed, or a line added, and the result is checked before it is written and re-read
  after: every reader gets the new value and every other variable keeps its value. A kept key or
  token the readers disagree on is refused.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import secrets
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from qwenops.errors import BadInputError, CheckFailedError, QwenopsError, UnreachableError
from qwenops.untrusted import MAX_ENV_FILE_BYTES, control_character, printable

if TYPE_CHECKING:
    from qwenops.config.profile import Profile

UNIT_PATH = "/etc/systemd/system/qwenops.service"
GATEWAY_UNIT_PATH = "/etc/systemd/system/qwenops-gateway.service"
SYSUSERS_PATH = "/etc/sysusers.d/qwenops.conf"
MODULES_PATH = "/etc/modules-load.d/qwenops-nvidia.conf"
STATE_DIRS = ("/var/lib/qwenops", "/var/cache/qwenops")
# ProtectHome= hides these from the service: a qwenops installed there cannot be started.
HIDDEN_BY_PROTECT_HOME = ("/home", "/root", "/run/user")

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]

API_KEY = "QWENOPS_API_KEY"
TOKEN_DETAIL = "QWENOPS_GATEWAY_TOKEN: new random token (not shown)"

# Where install writes without --root (tests point it at a temporary directory).
_HOST_ROOT = "/"
# Linux's PATH_MAX, the longest path a system call takes, its final NUL included.
_PATH_MAX = 4096
_NEW_DIRECTORY_MODE = 0o755
# Directories are held as O_PATH descriptors: walking needs search permission only, as a path would.
_DIRECTORY = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO put where a file was expected must not hang the install.
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
# Errors that say the file system could not be reached (a dead NFS server, a failing disk): exit 3.
_UNREACHABLE = frozenset({errno.EIO, errno.ETIMEDOUT, errno.EHOSTDOWN, errno.EHOSTUNREACH, errno.ENOTCONN,
                          errno.ESTALE})


class Action(BaseModel):
    """One step: write, keep, chmod, add (a line), remove (a file) or run, skip (a command)."""

    model_config = ConfigDict(frozen=True)

    verb: str
    target: str
    detail: str = ""


class InstallResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    command: str  # "install" or "uninstall"
    profile: str | None
    root: str | None
    dry_run: bool
    unit: str
    env_file: str
    actions: tuple[Action, ...]
    gateway_unit: str | None = None  # qwenops-gateway.service, when installed (or removed) with the server's


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]}: command not found")


def sysusers_conf() -> str:
    from qwenops.render.deploy import SERVICE_USER, STATE_DIR

    return (
        "# qwenops.service's user, created by systemd-sysusers (qwenops install systemd).\n"
        f'u {SERVICE_USER} - "qwenops service" {STATE_DIR} /usr/sbin/nologin\n'
        "# The NVIDIA and DRM device nodes belong to these groups on some distributions (created if missing).\n"
        f"m {SERVICE_USER} video\n"
        f"m {SERVICE_USER} render\n"
    )


MODULES_CONF = (
    "# Load CUDA's unified-memory driver at boot: qwenops.service's device allow-list (char-nvidia-uvm)\n"
    "# is resolved when the unit starts, and its sandbox cannot load modules itself.\n"
    "nvidia-uvm\n"
)


def _new_token() -> str:
    """256 random bits, base64url: 43 characters of A-Z a-z 0-9 - _, which the gateway's token rules allow
    and every env-file reader takes as they are (no quote, backslash, $ or space)."""
    return secrets.token_urlsafe(32)


# ------------------------------------------------------------------ the env file, as its readers read it

_WHITESPACE, _NEWLINE, _COMMENTS, _SHELL_NEED_ESCAPE = " \t\n\r", "\n\r", "#;", "\"\\`$"
_ENDS_WITH_A_VALUE = frozenset({"pre_value", "value", "escape", "single", "double", "double_escape"})


@dataclass(frozen=True)
class _Assignment:
    key: str
    value: str
    start: int  # the key's first character
    end: int  # the line end that closes it, or len(text)


def _systemd_assignments(  # noqa: PLR0912, PLR0915 -- one branch per state of systemd's switch, to compare
        text: str, *, before_254: bool = False) -> list[_Assignment]:
    """Every assignment in TEXT, in order, as systemd reads an EnvironmentFile=: a port of
    parse_env_file_internal() (src/basic/env-file.c). Comments are lines that start with # or ;
    (after blanks); \\r ends a line too; quotes and a trailing backslash carry a value across lines.
    BEFORE_254: a comment ending in a backslash also swallows the next line (systemd 253 and older;
    Debian 12 has 252). systemd reads up to the first NUL; install refuses text with one."""
    found: list[_Assignment] = []
    state, start = "pre_key", 0
    key: list[str] = []
    value: list[str] = []
    key_blank: int | None = None  # where the key's trailing blanks start
    value_blank: int | None = None  # where the (unquoted) value's trailing blanks start

    def push(end: int, *, chomp: bool) -> None:
        kept = value[:value_blank] if chomp and value_blank is not None else value
        found.append(_Assignment("".join(key[:key_blank]), "".join(kept), start, end))

    for at, char in enumerate(text):
        if state == "pre_key":
            if char in _COMMENTS:
                state = "comment"
            elif char not in _WHITESPACE:
                state, start, key, key_blank = "key", at, [char], None
        elif state == "key":
            if char in _NEWLINE:
                state = "pre_key"  # a line without '=' is ignored
            elif char == "=":
                state, value, value_blank = "pre_value", [], None
            else:
                if char not in _WHITESPACE:
                    key_blank = None
                elif key_blank is None:
                    key_blank = len(key)
                key.append(char)
        elif state == "pre_value":
            if char in _NEWLINE:
                push(at, chomp=False)
                state = "pre_key"
            elif char == "'":
                state = "single"
            elif char == '"':
                state = "double"
            elif char == "\\":
                state = "escape"
            elif char not in _WHITESPACE:
                state = "value"
                value.append(char)
        elif state == "value":
            if char in _NEWLINE:
                push(at, chomp=True)
                state = "pre_key"
            elif char == "\\":
                state, value_blank = "escape", None
            else:
                if char not in _WHITESPACE:
                    value_blank = None
                elif value_blank is None:
                    value_blank = len(value)
                value.append(char)
        elif state == "escape":
            state = "value"
            if char not in _NEWLINE:  # an escaped line end joins the lines
                value.append(char)
        elif state == "single":
            if char == "'":
                state = "pre_value"
            else:
                value.append(char)
        elif state == "double":
            if char == '"':
                state = "pre_value"
            elif char == "\\":
                state = "double_escape"
            else:
                value.append(char)
        elif state == "double_escape":
            state = "double"
            if char in _SHELL_NEED_ESCAPE:
                value.append(char)
            elif char != "\n":
                value += ["\\", char]
        elif state == "comment":
            if char == "\\":
                state = "comment_escape"
            elif char in _NEWLINE:
                state = "pre_key"
        else:  # comment_escape
            state = "comment" if before_254 or char not in _NEWLINE else "pre_key"
    if state in _ENDS_WITH_A_VALUE:
        push(len(text), chomp=state == "value")
    return found


def systemd_env(text: str, *, before_254: bool = False) -> dict[str, str]:
    """The variables systemd sets from an env file's TEXT: the last assignment of each wins."""
    return {a.key: a.value for a in _systemd_assignments(text, before_254=before_254)}


def _dotenv_env(text: str, *, interpolate: bool) -> dict[str, str]:
    """The variables qwenops (config/settings.py, python-dotenv) reads from TEXT; no value is ''."""
    from dotenv import dotenv_values

    logger = logging.getLogger("dotenv.main")  # it warns of each line it cannot parse: not install's output
    was, logger.disabled = logger.disabled, True
    try:
        values = dotenv_values(stream=io.StringIO(text), interpolate=interpolate)
    finally:
        logger.disabled = was
    return {name: value or "" for name, value in values.items()}


def _readings(text: str, *, interpolate: bool = True) -> dict[str, dict[str, str]]:
    """TEXT's variables as each reader of the env file sees them: systemd (the server and the gateway,
    old and new) and qwenops' own commands (`QWENOPS_ENV_FILE=… qwenops smoke-stream`)."""
    return {"systemd": systemd_env(text), "systemd before 254": systemd_env(text, before_254=True),
            "qwenops": _dotenv_env(text, interpolate=interpolate)}


def _sets_only(before: dict[str, dict[str, str]], text: str, variable: str, value: str) -> bool:
    """Whether every reader reads VARIABLE as VALUE from TEXT, and every other variable as in BEFORE."""
    for reader, old in _readings(text, interpolate=False).items():
        new = dict(old)
        if new.pop(variable, None) != value:
            return False
        if new != {name: v for name, v in before[reader].items() if name != variable}:
            return False
    return True


def _assign(text: str, variable: str, value: str) -> str | None:
    """TEXT with VARIABLE=VALUE as the assignment every reader reads, as data: systemd's last assignment of
    it replaced and the earlier ones removed, else a line added (after a blank line when a comment ending in
    a backslash would swallow it in systemd 253 and older). None when no edit sets it without changing
    another variable (an open quote swallows whatever follows)."""
    line = f"{variable}={value}"
    candidates = []
    mine = [a for a in _systemd_assignments(text) if a.key == variable]
    if mine:
        pieces, at = [], 0
        for earlier in mine[:-1]:
            pieces.append(text[at:earlier.start])
            at = min(earlier.end + 1, len(text))
        pieces += [text[at:mine[-1].start], line, text[mine[-1].end:] or "\n"]
        candidates.append("".join(pieces))
    separator = "\n" if text and not text.endswith("\n") else ""
    candidates += [f"{text}{separator}{line}\n", f"{text}{separator}\n{line}\n"]
    before = _readings(text, interpolate=False)
    return next((c for c in candidates if _sets_only(before, c, variable, value)), None)


def _kept_value(readings: dict[str, dict[str, str]], variable: str, shown: str) -> str:
    """VARIABLE's value in an existing env file ('' when unset), refused unless every reader reads the same
    one, without a control character: the value install reports is then the one the service gets."""
    values = {reader: env.get(variable, "") for reader, env in readings.items()}
    hint = (f"write it as one line {variable}=VALUE (no quotes, backslashes, $ or export), not after a comment "
            f"ending in a backslash; or delete its lines and install writes a new one")
    if len(set(values.values())) > 1:
        who = "; ".join(f"{reader}: {'one' if v else 'none'}" for reader, v in values.items())
        raise BadInputError(f"{shown} sets {variable} so that its readers disagree on its value ({who}; never "
                            "shown)", field=variable, hint=hint)
    value = next(iter(values.values()))
    what = control_character(value)
    if what is not None:
        raise BadInputError(f"{shown} sets a {variable} that holds {what}", field=variable, hint=hint)
    return value


# ------------------------------------------------------------------------------ the paths under the root


def _under(root: Path | None, path: str) -> Path:
    return Path(path) if root is None else root / path.lstrip("/")


def _kind(mode: int) -> str:
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
class _EnvFile:
    """An existing env file, checked: its text and the stat it was read with (None: this user may not read it)."""

    st: os.stat_result
    text: str | None


class _Tree:
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
        return str(_under(self.root, path))

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
            raise self.refusal(path, f"is {_kind(st.st_mode)}, not a directory", hint="move it away")
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
            raise self.refusal(path, f"is {_kind(st.st_mode)}, not a file install writes", hint="move it away")

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

    def env_file(self, path: str, *, dry_run: bool) -> _EnvFile | None:
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
                    return _EnvFile(st, None)
                raise BadInputError(f"cannot read {self.shown(path)}: {exc.strerror or exc}", field="user",
                                    hint="run it as root") from None
            except OSError as exc:
                raise self.os_error(path, exc, "read") from None
        if not _same(opened, st):
            raise self.refusal(path, "was replaced while install was reading it", hint="run install again")
        self.check_env(-1, name, path, opened)
        return _EnvFile(opened, self.env_text(path, data))

    def check_env(self, dir_fd: int, name: str, path: str, st: os.stat_result) -> None:
        keep = "move it away and install writes a new env file with a new key"
        if stat.S_ISLNK(st.st_mode):
            raise self.symlink(dir_fd, name, path)
        if not stat.S_ISREG(st.st_mode):
            raise self.refusal(path, f"is {_kind(st.st_mode)}: install keeps a key only in a regular file",
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


# ---------------------------------------------------------------------------------------- checks and plan


def _check_text(value: str, field: str, hint: str) -> None:
    what = control_character(value)
    if what is not None:
        raise BadInputError(f"its name holds {what}", field=field, hint=hint)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInputError("its name is not UTF-8", field=field, hint=hint) from None
    if len(value.encode("utf-8")) >= _PATH_MAX:
        raise BadInputError(f"its name is {len(value.encode('utf-8'))} bytes long; a path is at most "
                            f"{_PATH_MAX - 1}", field=field, hint=hint)


def _root_path(root: Path | str | None) -> Path | None:
    """--root as given (a string from the command line: '' is not '.'), or refused: empty, relative, control
    characters, not UTF-8, longer than a path may be."""
    if root is None:
        return None
    text = root if isinstance(root, str) else str(root)
    hint = "name the directory to write under from /, e.g. --root /srv/image"
    if not text:
        raise BadInputError("the empty string names no directory", field="--root", hint=hint)
    _check_text(text, "--root", hint)
    if not Path(text).is_absolute():
        raise BadInputError(f"{text} is not an absolute path", field="--root", hint=hint)
    return Path(text)


def _check_qwenops_bin(qwenops_bin: str, *, on_host: bool) -> None:
    path = Path(qwenops_bin)
    hint = ("install qwenops into /opt/qwenops (python3 -m venv /opt/qwenops && "
            "/opt/qwenops/bin/pip install '.[gpu]'), or pass --qwenops-bin")
    _check_text(qwenops_bin, "--qwenops-bin", hint)
    if not path.is_absolute():
        raise BadInputError(f"{qwenops_bin} is not an absolute path", field="--qwenops-bin", hint=hint)
    hidden = next((d for d in HIDDEN_BY_PROTECT_HOME if path.is_relative_to(d)), None)
    if hidden is not None:
        raise BadInputError(f"{qwenops_bin} is under {hidden}, which the unit's ProtectHome= hides from the service",
                            field="--qwenops-bin", hint=hint)
    if on_host and not os.access(path, os.X_OK):
        raise BadInputError(f"{qwenops_bin} is not an executable file", field="--qwenops-bin", hint=hint)


def _preflight(root: Path | None, dry_run: bool, commands: Sequence[str]) -> None:
    if root is not None:
        os.close(_Tree(root).open_root())
        return
    if not dry_run and os.geteuid() != 0:
        raise BadInputError("writing /etc needs root", field="user", hint="run it with sudo, or try --dry-run")
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        raise BadInputError(f"{', '.join(missing)} not found: this host does not run systemd", field="host",
                            hint="run qwenops in Docker instead: docker compose -f docker/compose.yaml up -d")


class _Plan:
    """Collects the actions, each path checked as it is planned; `carry_out` then does them in order,
    unless this is a dry run (which therefore refuses exactly what the real run refuses)."""

    def __init__(self, root: Path | None, dry_run: bool, run: Runner) -> None:
        self.root, self.dry_run, self._run = root, dry_run, run
        self.tree = _Tree(root)
        self.steps: list[tuple[Action, Callable[[], None] | None]] = []

    @property
    def actions(self) -> list[Action]:
        return [action for action, _ in self.steps]

    def add(self, verb: str, path: str, detail: str = "", do: Callable[[], None] | None = None) -> None:
        self.steps.append((Action(verb=verb, target=self.tree.shown(path), detail=detail), do))

    def write(self, path: str, text: str, mode: int, detail: str = "", *, new: bool = False,
              sets: dict[str, str] | None = None, expect: os.stat_result | None = None,
              verb: str = "write") -> None:
        """PATH with TEXT (NEW: a new file; EXPECT: a rewrite of that file); SETS: the variables the written
        env file must then give every reader, re-read to check."""
        if expect is None:
            self.tree.inspect_file(path)

        def do() -> None:
            self.tree.write(path, text, mode, new=new, expect=expect)
            if sets:
                self._check_written(path, sets)

        self.add(verb, path, detail or f"mode {mode:o}", do)

    def _check_written(self, path: str, sets: dict[str, str]) -> None:
        env = self.tree.env_file(path, dry_run=False)
        readings = _readings(env.text) if env is not None and env.text is not None else {}
        for variable, value in sets.items():
            if not readings or any(r.get(variable) != value for r in readings.values()):
                raise CheckFailedError(f"{self.tree.shown(path)} does not set the new {variable} after install "
                                       "wrote it (did another process change it?)", field="install",
                                       hint="run install again, then check the file")

    def chmod_private(self, path: str, st: os.stat_result, why: str) -> None:
        mode = stat.S_IMODE(st.st_mode)
        self.add("chmod", path, f"{mode:o} -> 600{why}", lambda: self.tree.chmod_private(path, st))

    def remove(self, path: str, *, tree: bool = False) -> None:
        name = path.rsplit("/", 1)[1]
        with self.tree.parent(path, create=False) as fd:
            st = None if fd is None else self.tree.lstat(fd, name, path)
            if fd is None or st is None:
                return
            if stat.S_ISLNK(st.st_mode):
                raise self.tree.symlink(fd, name, path)
            if tree and not stat.S_ISDIR(st.st_mode):
                raise self.tree.refusal(path, f"is {_kind(st.st_mode)}, not a directory", hint="move it away")
            if not tree:
                self.tree.check_file(fd, name, path, st)
        found: os.stat_result = st
        self.add("remove", path, "", lambda: self.tree.remove(path, found, tree=tree))

    def command(self, argv: Sequence[str], *, required: bool = True, why: str = "") -> None:
        shown = " ".join(argv)
        if self.root is not None:
            self.steps.append((Action(verb="skip", target=shown, detail="--root: nothing runs on this host"), None))
            return

        def do() -> None:
            done = self._run(argv)
            if done.returncode != 0 and required:
                last = (done.stderr or done.stdout or "").strip().splitlines()
                unit = argv[-1].removesuffix(".service") if argv[-1].endswith(".service") else "qwenops"
                raise CheckFailedError(f"`{shown}` failed (exit {done.returncode})" + (f": {last[-1]}" if last else ""),
                                       field="install", hint=f"see journalctl -u {unit} and systemctl status {unit}")

        self.steps.append((Action(verb="run", target=shown, detail=why), do))

    def carry_out(self) -> None:
        if self.dry_run:
            return
        for action, do in self.steps:
            if do is None:
                continue
            try:
                do()
            except OSError as exc:  # a bug's path, still one line: every expected one is mapped where it happens
                raise BadInputError(f"cannot {action.verb} {action.target}: {exc.strerror or exc}",
                                    field=self.tree.field) from None


def _new_env_text(profile: Profile, values: dict[str, str]) -> str:
    """The rendered env file with VALUES (a new key, and with --gateway a token) set as data."""
    from qwenops.render.systemd import env_file

    text = env_file(profile)
    for variable, value in values.items():
        assigned = _assign(text, variable, value)
        if assigned is None:
            raise BadInputError(f"the env file rendered for profile {profile.name} leaves no line where every "
                                f"reader would read {variable} (a quote or backslash in the profile's text?)",
                                field="profile", hint="check the profile's description and other text fields")
        text = assigned
    return text


def _plan_env(plan: _Plan, profile: Profile, *, gateway: bool) -> None:
    """The env file's actions: a new one with a new key (and token), or the existing one checked, kept,
    made 0600, and with --gateway given a token it lacks."""
    from qwenops.gateway.config import TOKEN_VARIABLE, valid_token
    from qwenops.render.deploy import ENV_FILE

    shown = plan.tree.shown(ENV_FILE)
    existing = plan.tree.env_file(ENV_FILE, dry_run=plan.dry_run)
    if existing is None:
        values = {API_KEY: _new_token()} | ({TOKEN_VARIABLE: _new_token()} if gateway else {})
        plan.write(ENV_FILE, _new_env_text(profile, values), 0o600, "mode 600, with a new random QWENOPS_API_KEY"
                   + (" and QWENOPS_GATEWAY_TOKEN (not shown)" if gateway else ""), new=True, sets=values)
        return
    if existing.text is None:  # a dry run as a user who may not read it
        if existing.st.st_mode & 0o7077:
            plan.chmod_private(ENV_FILE, existing.st, " (it holds the key)")
        else:
            plan.add("keep", ENV_FILE, "exists; its key is kept (this user cannot read it)")
        if gateway:
            plan.add("add", ENV_FILE, f"{TOKEN_DETAIL}, unless it has one (this user cannot read it)")
        return
    readings = _readings(existing.text)
    key = _kept_value(readings, API_KEY, shown)
    if existing.st.st_mode & 0o7077:
        plan.chmod_private(ENV_FILE, existing.st, " (it holds the key)" if key else "")
    elif key:
        plan.add("keep", ENV_FILE, "exists; its key is kept")
    else:
        plan.add("keep", ENV_FILE, f"exists; it sets no {API_KEY}: the server takes requests without a key")
    if not gateway:
        return
    token = _kept_value(readings, TOKEN_VARIABLE, shown)
    if token:
        if not valid_token(token):
            raise BadInputError(f"{shown} holds a {TOKEN_VARIABLE} the gateway refuses (it must be 16 to 256 "
                                "characters of A-Z a-z 0-9 . _ ~ -)", field=TOKEN_VARIABLE,
                                hint="replace it, or delete its line and install writes a new one")
        plan.add("keep", ENV_FILE, f"its {TOKEN_VARIABLE} is kept")
        return
    new_token = _new_token()
    text = _assign(existing.text, TOKEN_VARIABLE, new_token)
    if text is None:
        raise BadInputError(f"{shown} has no line where systemd and qwenops would both read a {TOKEN_VARIABLE} "
                            "install adds, without changing another variable (a quote left open?)",
                            field=TOKEN_VARIABLE, hint=f"fix the file, or add a {TOKEN_VARIABLE}=TOKEN line yourself")
    plan.write(ENV_FILE, text, 0o600, TOKEN_DETAIL, sets={TOKEN_VARIABLE: new_token}, expect=existing.st,
               verb="add")


def install_systemd(profile_name: str | None, *, root: Path | str | None = None, dry_run: bool = False,
                    qwenops_bin: str | None = None, gateway: bool = False, run: Runner = _run) -> InstallResult:
    """Install and start qwenops.service (and with GATEWAY qwenops-gateway.service) for PROFILE_NAME
    (see the module docstring). Everything is planned and checked before anything is done."""
    from qwenops.config.loader import load_profile
    from qwenops.render.deploy import ENV_FILE, QWENOPS_BIN
    from qwenops.render.systemd import GATEWAY_UNIT_NAME, UNIT_NAME, gateway_unit, systemd_unit

    root_path = _root_path(root)
    profile = load_profile(profile_name, env={})
    qwenops_bin = qwenops_bin or QWENOPS_BIN
    _check_qwenops_bin(qwenops_bin, on_host=root_path is None)
    unit = systemd_unit(profile, qwenops_bin=qwenops_bin)  # a CPU profile is refused here
    _preflight(root_path, dry_run, ("systemctl", "systemd-sysusers"))
    plan = _Plan(root_path, dry_run, run)
    plan.write(UNIT_PATH, unit, 0o644)
    if gateway:
        plan.write(GATEWAY_UNIT_PATH, gateway_unit(profile, qwenops_bin=qwenops_bin), 0o644)
    _plan_env(plan, profile, gateway=gateway)
    plan.write(SYSUSERS_PATH, sysusers_conf(), 0o644)
    plan.write(MODULES_PATH, MODULES_CONF, 0o644)
    plan.command(["systemd-sysusers", SYSUSERS_PATH], why="create the qwenops user and groups")
    plan.command(["modprobe", "nvidia-uvm"], required=False, why="best effort: the driver may load it later")
    plan.command(["systemctl", "daemon-reload"])
    # --no-block: a GPU start takes minutes; journalctl -u qwenops -f shows it becoming ready.
    plan.command(["systemctl", "enable", "--now", "--no-block", UNIT_NAME])
    if gateway:
        # --no-block too: After=qwenops.service holds its start until the server is ready.
        plan.command(["systemctl", "enable", "--now", "--no-block", GATEWAY_UNIT_NAME])
    plan.carry_out()
    return InstallResult(command="install", profile=profile.name, root=str(root_path) if root_path else None,
                         dry_run=dry_run, unit=str(_under(root_path, UNIT_PATH)),
                         env_file=str(_under(root_path, ENV_FILE)), actions=tuple(plan.actions),
                         gateway_unit=str(_under(root_path, GATEWAY_UNIT_PATH)) if gateway else None)


def uninstall_systemd(*, root: Path | str | None = None, dry_run: bool = False, purge: bool = False,
                      run: Runner = _run) -> InstallResult:
    """Stop, disable and remove qwenops.service (and qwenops-gateway.service, when there); with PURGE also
    its key, data and user. Every path is checked before anything is stopped or removed."""
    from qwenops.render.deploy import ENV_FILE, SERVICE_USER
    from qwenops.render.systemd import GATEWAY_UNIT_NAME, UNIT_NAME

    root_path = _root_path(root)
    _preflight(root_path, dry_run, ("systemctl",))
    plan = _Plan(root_path, dry_run, run)
    gateway = plan.tree.exists(GATEWAY_UNIT_PATH)
    if gateway:  # the relay first: its chats drain while the server still answers them
        plan.command(["systemctl", "disable", "--now", GATEWAY_UNIT_NAME], why="stop it (drained) and disable it")
    if plan.tree.exists(UNIT_PATH):
        plan.command(["systemctl", "disable", "--now", UNIT_NAME], why="stop it (drained) and disable it")
    plan.remove(GATEWAY_UNIT_PATH)
    plan.remove(UNIT_PATH)
    plan.remove(SYSUSERS_PATH)
    plan.remove(MODULES_PATH)
    plan.command(["systemctl", "daemon-reload"])
    if purge:
        plan.remove(ENV_FILE)
        for directory in STATE_DIRS:
            plan.remove(directory, tree=True)
        plan.command(["userdel", SERVICE_USER], required=False, why="the service user")
    plan.carry_out()
    return InstallResult(command="uninstall", profile=None, root=str(root_path) if root_path else None,
                         dry_run=dry_run, unit=str(_under(root_path, UNIT_PATH)),
                         env_file=str(_under(root_path, ENV_FILE)), actions=tuple(plan.actions),
                         gateway_unit=str(_under(root_path, GATEWAY_UNIT_PATH)) if gateway else None)
