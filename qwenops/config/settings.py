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

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qwenops.errors import SettingsError

if TYPE_CHECKING:
    from pydantic import SecretStr

ENV_PREFIX = "QWENOPS_"
DEFAULT_PROFILE = "cpu-tiny"
DEFAULT_ENV_FILE = Path(".env")
ENV_FILE_VARIABLE = "QWENOPS_ENV_FILE"
SECRET_VARIABLES = ("QWENOPS_API_KEY", "QWENOPS_GATEWAY_TOKEN")


@dataclass(frozen=True)
class Value:
    """One QWENOPS_* value and where it came from ("environment QWENOPS_PORT", "env file ./.env")."""

    value: str
    source: str


def env_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """The env file to read: $QWENOPS_ENV_FILE (which must then exist), else ./.env when it exists."""
    environ = os.environ if environ is None else environ
    named = environ.get(ENV_FILE_VARIABLE, "")
    if not named:
        return DEFAULT_ENV_FILE if DEFAULT_ENV_FILE.is_file() else None
    path = Path(named).expanduser()
    if not path.is_file():
        what = "a directory" if path.is_dir() else "not found"
        raise SettingsError(f"{path} is {what}", field=ENV_FILE_VARIABLE,
                            hint="name an existing env file, or unset it to read ./.env")
    return path


def environment(environ: Mapping[str, str] | None = None) -> dict[str, Value]:
    """Every non-empty QWENOPS_* variable: the env file first, the environment over it.

    ENVIRON None is the process environment plus the env file; a mapping (tests) is used alone.
    """
    found: dict[str, Value] = {}
    if environ is None:
        environ = os.environ
        path = env_file(environ)
        if path is not None:
            found.update(_read_env_file(path))
    for name, value in environ.items():
        if name.startswith(ENV_PREFIX):
            if value:
                found[name] = Value(value, f"environment {name}")
            else:
                found.pop(name, None)  # set empty in the environment: unset, even over the env file
    return found


def _read_env_file(path: Path) -> dict[str, Value]:
    from dotenv import dotenv_values

    try:
        values = dotenv_values(path, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SettingsError(f"cannot read env file {path}: {reason}", field=ENV_FILE_VARIABLE) from None
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
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
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
    from pydantic import SecretStr

    env = environment(environ)

    def get(name: str) -> str | None:
        found = env.get(ENV_PREFIX + name)
        return found.value if found else None

    profiles_dir, state_dir, api_key = get("PROFILES_DIR"), get("STATE_DIR"), get("API_KEY")
    token = get("GATEWAY_TOKEN")
    return Settings(
        profile=get("PROFILE") or DEFAULT_PROFILE,
        profiles_dir=Path(profiles_dir).expanduser() if profiles_dir else None,
        state_dir=Path(state_dir).expanduser() if state_dir else default_state_dir(),
        api_key=SecretStr(api_key) if api_key else None,
        base_url=get("BASE_URL"),
        gateway_token=SecretStr(token) if token else None,
    )
