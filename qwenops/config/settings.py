"""Settings: the QWENOPS_* variables, from the environment and an env file, read in one place.

Precedence for every value is CLI > environment > env file > profile > built-in default: the command
line is the most specific and most recent intent, the environment is how systemd, Docker and
Kubernetes inject per-host values, the env file is the operator's per-host baseline, the profile is
the reviewed, versioned launch configuration, and the defaults are vLLM's own.

One reader, one rule. `environment()` reads the env file and then the process environment over it,
and keeps where each value came from. A variable set to the empty string counts as unset, for every
variable and from either place: unit files and compose files often write `QWENOPS_STATE_DIR=`, and
"empty" must not mean "the current directory" for one command and "the default" for another.
`load_settings()` validates the values that are not profile fields; profile fields
(`QWENOPS_MAX_MODEL_LEN`, ...) come from the same mapping, through qwenops.config.loader.

Hand-written on purpose, on python-dotenv (the env-file parser pydantic-settings itself uses):
pydantic-settings cannot say where a value came from, which `profiles show --sources` prints, and a
second reader for the same variables is how `render flags` and `serve` once disagreed.
Secrets (the API key, the gateway's token) come only from the environment or an env file and are never rendered.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qwenops import untrusted
from qwenops.errors import SettingsError
from qwenops.units import MIB

if TYPE_CHECKING:
    from pydantic import SecretStr

ENV_PREFIX = "QWENOPS_"
DEFAULT_PROFILE = "cpu-tiny"
DEFAULT_ENV_FILE = Path(".env")
ENV_FILE_VARIABLE = "QWENOPS_ENV_FILE"
SECRET_VARIABLES = ("QWENOPS_API_KEY", "QWENOPS_GATEWAY_TOKEN")
# QWENOPS_* names read outside this module: the root command's traceback switch, the demo script's
# and the engine tests' own knobs, and the mark serve sets in its server's environment (a qwenops run
# inside that server's environment must not call it a typo).
OTHER_VARIABLES = ("QWENOPS_DEBUG", "QWENOPS_DEMO_PORT", "QWENOPS_TEST_READY_TIMEOUT", "QWENOPS_RUN_ID")
# What Kubernetes injects for a Service named qwenops-*: no setting, and no typo of one.
_KUBERNETES_SERVICE = re.compile(r"^QWENOPS_\w+_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT(_\d+_(TCP|UDP|SCTP)\w*)?)$")


class SettingsWarning(UserWarning):
    """A setting that is ignored (a misspelled QWENOPS_* name, an env-file line that does not parse): the
    command goes on, and the root command shows it as one `warning:` line on stderr."""

    qwenops_warning = True


_PATH_MAX = 4096  # Linux's PATH_MAX


@dataclass(frozen=True)
class Value:
    """One QWENOPS_* value and where it came from ("environment QWENOPS_PORT", "env file ./.env")."""

    value: str
    source: str


def expand_path(value: str, variable: str) -> Path:
    """VALUE as a path with ~ and ~user expanded; a ~user with no home here, a control character (a line
    break would start a new line in every unit and script the path is rendered into) or more than PATH_MAX
    characters is bad input naming VARIABLE."""
    from qwenops.untrusted import control_character

    found = control_character(value)
    if found is not None:
        raise SettingsError(f"a path must be one line of text, without control characters; it has {found}",
                            field=variable)
    if len(value) > _PATH_MAX:
        raise SettingsError(f"a path of {len(value):,} characters: at most {_PATH_MAX:,}", field=variable)
    try:
        return Path(value).expanduser()
    except RuntimeError:  # ~nosuchuser, or ~ with neither $HOME nor a passwd entry
        user = value[1:].split("/", 1)[0] or "this user"
        raise SettingsError(f"{_shown(value)}: {user} has no home directory here", field=variable,
                            hint="write the path out in full") from None


def _shown(path: object) -> str:
    text = str(path)
    return text if len(text) <= 160 else f"{text[:80]}…{text[-60:]} ({len(text):,} characters)"


def env_file(environ: Mapping[str, str] | None = None) -> tuple[Path, bytes | None] | None:
    """The env file to read: $QWENOPS_ENV_FILE (which must then be a regular file), else ./.env when it
    is one; with ./.env, its bytes as read from the descriptor its owner and mode were checked on (_own_file)."""
    import stat

    environ = os.environ if environ is None else environ
    named = environ.get(ENV_FILE_VARIABLE, "")
    if not named:
        raw = _own_file(DEFAULT_ENV_FILE)
        return (DEFAULT_ENV_FILE, raw) if raw is not None else None
    path = expand_path(named, ENV_FILE_VARIABLE)
    hint = "name an existing env file, or unset it to read ./.env"
    try:
        mode = path.stat().st_mode  # stat, not open: a FIFO would wait here for a writer
    except FileNotFoundError:
        raise SettingsError(f"{_shown(path)} is not found", field=ENV_FILE_VARIABLE, hint=hint) from None
    except OSError as exc:
        raise SettingsError(f"cannot read {_shown(path)}: {exc.strerror or exc}", field=ENV_FILE_VARIABLE,
                            hint=hint) from None
    if not stat.S_ISREG(mode):
        from qwenops.readfile import kind_of

        raise SettingsError(f"{_shown(path)} is {kind_of(mode)}, not an env file", field=ENV_FILE_VARIABLE,
                            hint=hint)
    return path, None


def _own_file(path: Path) -> bytes | None:
    """The bytes of PATH, the env file found in the current directory, when it is a regular file that this user (or
    root) owns and nobody else may write; else None. ./.env is read without being named, so in a directory someone
    else controls (/tmp, a shared checkout) their file would set QWENOPS_BASE_URL, and the key would go there: such
    a file is ignored, with a warning naming why (QWENOPS_ENV_FILE names a file to read it anyway). The checks and
    the read are made on one descriptor (audit 9: checked by path and read by name again, a file swapped in between
    was read 472 times in 59,913 tries), opened without waiting (a FIFO is not a file)."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        whose = ("another user's" if st.st_uid not in (os.getuid(), 0) else "writable by every user"
                 if st.st_mode & stat.S_IWOTH else "writable by its group" if st.st_mode & stat.S_IWGRP
                 and not _private_group(st.st_uid, st.st_gid) else None)
        if whose is not None:
            warnings.warn(SettingsWarning(
                f"./.env is {whose}, so it is not read (an env file sets where the API key goes); name it with "
                f"{ENV_FILE_VARIABLE} to read it anyway"), stacklevel=4)
            return None
        return file.read(untrusted.MAX_ENV_FILE_BYTES + 1)


def _private_group(uid: int, gid: int) -> bool:
    """Whether GID is UID's own group and no one else's (a user private group, where umask 002 makes files 0664)."""
    import grp
    import pwd

    try:
        user, group = pwd.getpwuid(uid), grp.getgrgid(gid)
    except KeyError:
        return False
    return group.gr_name == user.pw_name and user.pw_gid == gid and not [m for m in group.gr_mem if m != user.pw_name]


def environment(environ: Mapping[str, str] | None = None) -> dict[str, Value]:
    """Every non-empty QWENOPS_* variable: the env file first, the environment over it.

    ENVIRON None is the process environment plus the env file; a mapping (tests) is used alone.
    """
    found: dict[str, Value] = {}
    key: tuple[object, ...] | None = None
    if environ is None:
        environ = os.environ
        source = env_file(environ)
        path = source[0] if source is not None else None
        cache = _read_once.get()
        key = _read_key(environ, path) if cache is not None else None
        if cache is not None and key in cache:
            return dict(cache[key])
        if source is not None:
            found.update(_read_env_file(*source))
            _warn_unknown(name for name in found)
        _warn_unknown(name for name in environ if name.startswith(ENV_PREFIX))
    for name, value in environ.items():
        if name.startswith(ENV_PREFIX):
            if value:
                found[name] = Value(value, f"environment {name}")
            else:
                found.pop(name, None)  # set empty in the environment: unset, even over the env file
    cache = _read_once.get()
    if cache is not None and key is not None:
        cache[key] = dict(found)
    return found


# Inside `read_once()`: the values environment() found, by what they were read from.
_read_once: contextvars.ContextVar[dict[tuple[object, ...], dict[str, Value]] | None] = contextvars.ContextVar(
    "qwenops_read_once", default=None)


@contextlib.contextmanager
def read_once() -> Iterator[None]:
    """Within this block (one CLI command: the root command opens it), the environment and env file are
    read once: every later environment() and load_settings() gets the same values without opening the
    env file again, and its warnings are not raised again. A changed QWENOPS_* variable, working
    directory or env file (its inode, size, mode or times: a chmod counts, for the secret check) is read
    afresh; outside the block, every call reads."""
    token = _read_once.set({})
    try:
        yield
    finally:
        _read_once.reset(token)


def _read_key(environ: Mapping[str, str], path: Path | None) -> tuple[object, ...]:
    variables = tuple(sorted((k, v) for k, v in environ.items() if k.startswith(ENV_PREFIX)))
    signature: tuple[int, ...] = ()
    if path is not None:
        try:
            st = path.stat()
            signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
        except OSError:
            signature = (-1,)  # the read reports it
    try:
        cwd = str(Path.cwd())
    except OSError:  # the working directory was removed: ./.env is then not found either
        cwd = ""
    return variables, cwd, str(path), signature


def known_variables() -> tuple[str, ...]:
    """Every QWENOPS_* name qwenops reads: the settings, the env file's own, QWENOPS_<FIELD> for each
    profile field the environment may override, and the few read elsewhere."""
    from qwenops.config.profile import OVERRIDABLE_FIELDS

    settings = (ENV_PREFIX + name.upper() for name in Settings.__dataclass_fields__)
    fields = (ENV_PREFIX + field.upper() for field in OVERRIDABLE_FIELDS)
    return (*settings, ENV_FILE_VARIABLE, *fields, *OTHER_VARIABLES)


def _warn_unknown(names: object) -> None:
    """A QWENOPS_* name qwenops does not read is most likely a typo of one it does: say so, with the
    nearest real name, instead of ignoring it without a word."""
    import difflib

    known = known_variables()
    for name in names:  # type: ignore[attr-defined]
        if name in known or _KUBERNETES_SERVICE.match(name):
            continue
        # Compared without the shared prefix, which would make every name look close to every other.
        close = difflib.get_close_matches(name[len(ENV_PREFIX):], [k[len(ENV_PREFIX):] for k in known], n=1,
                                          cutoff=0.75)
        hint = (f"did you mean {ENV_PREFIX}{close[0]}?" if close
                else "the settings are listed in docs/profiles.md, Settings and precedence")
        warnings.warn(SettingsWarning(f"{_shown(name)}: no such setting, so it is ignored ({hint})"), stacklevel=3)


def _read_env_file(path: Path, raw: bytes | None = None) -> dict[str, Value]:
    """The QWENOPS_* values of the env file: at most MAX_ENV_FILE_BYTES of UTF-8, a regular file only, read
    without waiting (`readfile.read_capped`). A line that does not parse is named with its file and number,
    and skipped, as python-dotenv skips it."""
    import io

    from dotenv.main import resolve_variables
    from dotenv.parser import parse_stream

    from qwenops.readfile import NotRegularFile, read_capped

    cap = untrusted.MAX_ENV_FILE_BYTES
    try:
        raw = read_capped(path, cap) if raw is None else raw  # RAW: ./.env as its checks read it
    except NotRegularFile as exc:
        raise SettingsError(f"{_shown(path)} {exc.instead_of('an env file')}",
                            field=ENV_FILE_VARIABLE) from None
    except OSError as exc:
        raise SettingsError(f"cannot read env file {_shown(path)}: {exc.strerror or exc}",
                            field=ENV_FILE_VARIABLE) from None
    if len(raw) > cap:
        raise SettingsError(f"env file {_shown(path)} is larger than {cap // MIB} MiB; is it an env file?",
                            field=ENV_FILE_VARIABLE)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SettingsError(f"cannot read env file {_shown(path)}: not UTF-8 text (byte {exc.start})",
                            field=ENV_FILE_VARIABLE) from None
    pairs: list[tuple[str, str | None]] = []
    for count, binding in enumerate(parse_stream(io.StringIO(text)), 1):
        # python-dotenv's variable expansion costs the square of the bindings: 140,000 short lines (under the byte
        # cap) held every command for minutes (audit 7). An env file holds tens.
        if count > untrusted.MAX_ENV_FILE_ENTRIES:
            raise SettingsError(f"env file {_shown(path)} holds more than {untrusted.MAX_ENV_FILE_ENTRIES:,} lines; "
                                "is it an env file?", field=ENV_FILE_VARIABLE)
        if binding.error:
            line = binding.original.string.strip().splitlines()[0][:80] if binding.original.string.strip() else ""
            warnings.warn(SettingsWarning(
                f"{ENV_FILE_VARIABLE}: {_shown(path)} line {binding.original.line}: cannot parse {line!r}, so it "
                f"is ignored (each line: NAME=VALUE)"), stacklevel=3)
        elif binding.key is not None:
            pairs.append((binding.key, binding.value))
    values = resolve_variables(pairs, override=True)  # ${VAR} expanded, as dotenv_values does
    found = {name: Value(value, f"env file {path}")
             for name, value in values.items() if name.startswith(ENV_PREFIX) and value}
    for secret in SECRET_VARIABLES:
        if secret in found:
            _refuse_shared_secret_file(path, secret)
    return found


def _refuse_shared_secret_file(path: Path, secret: str) -> None:
    """An env file holding a secret (the API key, the gateway's token) must be private: group or others
    reading it is bad input.

    The key guards a GPU anyone on the network could otherwise use; a 0644 file hands it to every
    local user and every backup. ssh refuses a readable private key for the same reason.
    """
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # it was just read; a race is not this check's business
    if mode & 0o044:
        raise SettingsError(
            f"{path} holds {secret} but its group or others can read it (mode {mode & 0o777:o})",
            field=ENV_FILE_VARIABLE, hint=f"chmod 600 {path}")


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(expand_path("~", "QWENOPS_STATE_DIR") / ".local" / "state")
    return Path(base) / "qwenops"


@dataclass(frozen=True)
class Settings:
    """The values that are not profile fields (a profile field is overridden by QWENOPS_<FIELD>)."""

    profile: str
    profiles_dir: Path | None
    state_dir: Path
    api_key: SecretStr | None
    base_url: str | None
    gateway_token: SecretStr | None = None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings now (not at import time: tests change the environment)."""
    env = environment(environ)

    def get(name: str) -> str | None:
        found = env.get(ENV_PREFIX + name)
        return found.value if found else None

    profiles_dir, state_dir, api_key = get("PROFILES_DIR"), get("STATE_DIR"), get("API_KEY")
    token = get("GATEWAY_TOKEN")
    return Settings(
        profile=get("PROFILE") or DEFAULT_PROFILE,
        profiles_dir=expand_path(profiles_dir, "QWENOPS_PROFILES_DIR") if profiles_dir else None,
        state_dir=expand_path(state_dir, "QWENOPS_STATE_DIR") if state_dir else default_state_dir(),
        api_key=_secret(api_key) if api_key else None,
        base_url=get("BASE_URL"),
        gateway_token=_secret(token) if token else None,
    )


def _secret(value: str) -> SecretStr:
    # pydantic's SecretStr (what the clients and the gateway take), imported only when a secret is set: the
    # pure commands never need pydantic otherwise.
    from pydantic import SecretStr

    return SecretStr(value)
