"""Settings from QWENOPS_* environment variables and an optional env file.

Precedence for every value is CLI > environment > env file > profile > built-in default: the command
line is the most specific and most recent intent, the environment is how systemd, Docker and
Kubernetes inject per-host values, the env file is the operator's per-host baseline, the profile is
the reviewed, versioned launch configuration, and the defaults are vLLM's own.

Two readers, one set of variables:
- `Settings` (pydantic-settings) is the full, validated model, secrets included. Commands that talk to
  a server or hold the API key use it.
- `locations()` reads just the profile name and the two directories every command needs. It exists
  because importing pydantic-settings costs ~130 ms here, almost the whole 0.15 s start-up budget of
  `qwenops render flags`; tests pin that both readers agree.
Secrets (the API key) come only from the environment or an env file and are never rendered.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qwenops.errors import SettingsError

if TYPE_CHECKING:
    from qwenops.settings_model import Settings

ENV_PREFIX = "QWENOPS_"
DEFAULT_PROFILE = "cpu-tiny"


def env_file() -> Path:
    """The env file read for QWENOPS_* values: $QWENOPS_ENV_FILE, else ./.env (when it exists)."""
    return Path(os.environ.get("QWENOPS_ENV_FILE", ".env"))


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "qwenops"


def environment(environ: Mapping[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """Every QWENOPS_* variable as {NAME: (value, source)}: the env file first, the environment over it."""
    environ = os.environ if environ is None else environ
    found: dict[str, tuple[str, str]] = {}
    path = env_file()
    if environ is os.environ and path.is_file():
        from dotenv import dotenv_values  # what pydantic-settings uses too: same file rules

        try:
            values = dotenv_values(path, encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"cannot read env file {path}: {exc}", field="QWENOPS_ENV_FILE") from None
        for key, value in values.items():
            if key.startswith(ENV_PREFIX) and value is not None:
                found[key] = (value, f"env file {path}")
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX):
            found[key] = (value, f"environment {key}")
    return found


@dataclass(frozen=True)
class Locations:
    profile: str
    profiles_dir: Path | None
    state_dir: Path


def locations() -> Locations:
    env = environment()

    def get(name: str) -> str | None:
        value = env.get(ENV_PREFIX + name)
        return value[0] if value and value[0] != "" else None

    profiles_dir = get("PROFILES_DIR")
    state_dir = get("STATE_DIR")
    return Locations(
        profile=get("PROFILE") or DEFAULT_PROFILE,
        profiles_dir=Path(profiles_dir).expanduser() if profiles_dir else None,
        state_dir=Path(state_dir).expanduser() if state_dir else default_state_dir(),
    )


def load_settings() -> Settings:
    """Read and validate all settings now (not at import time: tests change the environment)."""
    from pydantic import ValidationError

    from qwenops.settings_model import Settings

    environment()  # reads the env file first, so an unreadable one is one clear error
    try:
        return Settings(_env_file=env_file())
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ENV_PREFIX + str(first["loc"][0]).upper() if first["loc"] else ENV_PREFIX
        raise SettingsError(first["msg"], field=name) from None
