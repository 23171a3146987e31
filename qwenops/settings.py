"""Process-wide settings from QWENOPS_* environment variables and an optional env file.

Precedence for every value is CLI > environment > profile > built-in default: the command line is
the most specific and most recent intent, the environment is how systemd/Docker/Kubernetes inject
per-host values, the profile is the reviewed, versioned baseline, and defaults are vLLM's own.
Secrets (the API key) come only from the environment or an env file; they are never rendered.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from qwenops.errors import SettingsError

ENV_PREFIX = "QWENOPS_"
DEFAULT_PROFILE = "cpu-tiny"


def env_file() -> Path:
    """The env file read for QWENOPS_* values: $QWENOPS_ENV_FILE, else ./.env (if it exists)."""
    return Path(os.environ.get("QWENOPS_ENV_FILE", ".env"))


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "qwenops"


class Settings(BaseSettings):
    """Values that are not part of a profile (profile fields are overridden by QWENOPS_<FIELD>)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_file_encoding="utf-8")

    profile: str = DEFAULT_PROFILE
    profiles_dir: Path | None = None
    state_dir: Path | None = None
    api_key: SecretStr | None = None
    base_url: str | None = None

    @property
    def resolved_state_dir(self) -> Path:
        return self.state_dir or default_state_dir()


def load_settings() -> Settings:
    """Read settings now (not at import time: tests and `--env-file` change the environment)."""
    try:
        return Settings(_env_file=env_file())
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ENV_PREFIX + str(first["loc"][0]).upper() if first["loc"] else ENV_PREFIX
        raise SettingsError(first["msg"], field=name) from None
