"""The full settings model (pydantic-settings); imported only by commands that need it.

See qwenops/settings.py for precedence and for why this lives apart (pydantic-settings' import time).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from qwenops.settings import DEFAULT_PROFILE, ENV_PREFIX, default_state_dir


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
        return (self.state_dir or default_state_dir()).expanduser()
