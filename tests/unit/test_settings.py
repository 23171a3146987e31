"""Settings: both readers agree, the env file counts, the environment wins, secrets stay secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwenops.settings import environment, load_settings, locations


@pytest.mark.parametrize("use_env_file", [False, True])
def test_locations_and_full_settings_agree(use_env_file: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = {"QWENOPS_PROFILE": "4090d", "QWENOPS_PROFILES_DIR": str(tmp_path / "p"),
              "QWENOPS_STATE_DIR": str(tmp_path / "s")}
    if use_env_file:
        env_file = tmp_path / "q.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        monkeypatch.setenv("QWENOPS_ENV_FILE", str(env_file))
        monkeypatch.delenv("QWENOPS_STATE_DIR")
    else:
        for key, value in values.items():
            monkeypatch.setenv(key, value)
    fast, full = locations(), load_settings()
    assert fast.profile == full.profile == "4090d"
    assert fast.profiles_dir == full.profiles_dir == tmp_path / "p"
    assert fast.state_dir == full.resolved_state_dir == tmp_path / "s"


def test_environment_wins_over_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "q.env"
    env_file.write_text("QWENOPS_PROFILE=from-file\nQWENOPS_API_KEY=sk-file\n")
    monkeypatch.setenv("QWENOPS_ENV_FILE", str(env_file))
    monkeypatch.setenv("QWENOPS_PROFILE", "from-env")
    assert locations().profile == load_settings().profile == "from-env"
    assert environment()["QWENOPS_API_KEY"] == ("sk-file", f"env file {env_file}")
    settings = load_settings()
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "sk-file"
    assert "sk-file" not in repr(settings) and "sk-file" not in str(settings.api_key)


def test_defaults_without_any_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("QWENOPS_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert locations().profile == "cpu-tiny"
    assert locations().state_dir == tmp_path / "qwenops"
    assert load_settings().api_key is None
