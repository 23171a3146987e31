"""Settings: one reader, one rule for empty values, the env file counts, the environment wins, secrets stay secret."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from qwenops.cli import cli
from qwenops.config.loader import resolve_profile
from qwenops.config.profile import OVERRIDABLE_FIELDS
from qwenops.config.settings import ENV_FILE_VARIABLE, Settings, Value, environment, load_settings
from qwenops.errors import SettingsError

# Every QWENOPS_* variable qwenops reads through the settings reader, with a valid value for it.
SETTING_VALUES = {
    "QWENOPS_PROFILE": "4090d",
    "QWENOPS_PROFILES_DIR": "{tmp}/profiles",
    "QWENOPS_STATE_DIR": "{tmp}/state-set",
    "QWENOPS_API_KEY": "sk-set",
    "QWENOPS_BASE_URL": "http://127.0.0.1:9",
    "QWENOPS_GATEWAY_TOKEN": "a-gateway-token-0123456789",
}
FIELD_VALUES = {
    "engine": "vllm-cpu", "model": "/models/m", "served_model_name": "m", "host": "127.0.0.2", "port": "8123",
    "tensor_parallel_size": "2", "gpu_memory_utilization": "0.5", "max_num_seqs": "4", "max_model_len": "1024",
    "max_num_batched_tokens": "4096", "enforce_eager": "true", "disable_log_stats": "true", "dtype": "half",
    "quantization": "awq", "kv_cache_dtype": "fp8", "cpu_offload_gb": "1", "reasoning_parser": "qwen3",
}
EVERY_VARIABLE = [*SETTING_VALUES, *(f"QWENOPS_{field.upper()}" for field in FIELD_VALUES)]


def test_the_lists_above_cover_every_setting_and_profile_field() -> None:
    settings_fields = {f"QWENOPS_{f.name.upper()}" for f in dataclasses.fields(Settings)}
    assert settings_fields == set(SETTING_VALUES)
    assert set(FIELD_VALUES) == set(OVERRIDABLE_FIELDS)


def _value(name: str, tmp_path: Path) -> str:
    value = SETTING_VALUES.get(name) or FIELD_VALUES[name.removeprefix("QWENOPS_").lower()]
    return value.format(tmp=tmp_path)


def _observed(name: str) -> object:
    """What qwenops makes of NAME now: the settings field, or the resolved profile field and its source."""
    settings = load_settings()
    field = name.removeprefix("QWENOPS_").lower()
    if name in SETTING_VALUES:
        found = getattr(settings, field)
        secret = field in ("api_key", "gateway_token") and found is not None
        return found.get_secret_value() if secret else found
    resolved = resolve_profile("4090d")
    return getattr(resolved.profile, field), resolved.sources[field]


@pytest.mark.parametrize("where", ["environment", "env file"])
@pytest.mark.parametrize("name", EVERY_VARIABLE)
def test_empty_is_unset_and_set_is_used(name: str, where: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "profiles").mkdir()
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("QWENOPS_STATE_DIR")
    env_file = tmp_path / "q.env"
    env_file.write_text("")
    env_file.chmod(0o600)  # it may hold the API key
    monkeypatch.setenv(ENV_FILE_VARIABLE, str(env_file))

    def put(value: str) -> None:
        if where == "environment":
            monkeypatch.setenv(name, value)
        else:
            env_file.write_text(f"{name}={value}\n")

    unset = _observed(name)
    put("")
    assert _observed(name) == unset
    assert name not in environment()
    put(_value(name, tmp_path))
    observed = _observed(name)
    assert observed != unset
    assert environment()[name].source == (f"environment {name}" if where == "environment" else f"env file {env_file}")


def test_empty_in_the_environment_unsets_the_env_file_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "q.env"
    env_file.write_text("QWENOPS_PROFILE=4090d\n")
    monkeypatch.setenv(ENV_FILE_VARIABLE, str(env_file))
    assert load_settings().profile == "4090d"
    monkeypatch.setenv("QWENOPS_PROFILE", "")
    assert load_settings().profile == "cpu-tiny"


def model_paths(*, state_dir: str | None, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """Where `render flags` and `serve --dry-run` put the tiny model under this QWENOPS_STATE_DIR."""
    if state_dir is None:
        monkeypatch.delenv("QWENOPS_STATE_DIR", raising=False)
    else:
        monkeypatch.setenv("QWENOPS_STATE_DIR", state_dir)
    runner = CliRunner()
    rendered = runner.invoke(cli, ["render", "flags", "-p", "cpu-tiny", "--json"], catch_exceptions=False)
    dry_run = runner.invoke(cli, ["serve", "-p", "cpu-tiny", "--dry-run", "--json"], catch_exceptions=False)
    assert rendered.exit_code == 0 and dry_run.exit_code == 0, (rendered.stderr, dry_run.stderr)
    flags = json.loads(rendered.stdout)["data"]["argv"]
    served = json.loads(dry_run.stdout)["data"]["argv"]
    return flags[flags.index("--model") + 1], served[served.index("--model") + 1]


@pytest.mark.parametrize("state_dir", [None, "", "{tmp}/explicit"])
def test_render_and_serve_agree_on_the_state_dir(state_dir: str | None, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    rendered, served = model_paths(state_dir=state_dir and state_dir.format(tmp=tmp_path), monkeypatch=monkeypatch)
    assert rendered == served
    expected = tmp_path / "explicit" if state_dir else tmp_path / "xdg" / "qwenops"
    assert rendered == str(expected / "models" / "qwen3-tiny")


def test_environment_wins_over_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "q.env"
    env_file.write_text("QWENOPS_PROFILE=from-file\nQWENOPS_API_KEY=sk-file\n")
    env_file.chmod(0o600)
    monkeypatch.setenv(ENV_FILE_VARIABLE, str(env_file))
    monkeypatch.setenv("QWENOPS_PROFILE", "from-env")
    assert load_settings().profile == "from-env"
    assert environment()["QWENOPS_API_KEY"] == Value("sk-file", f"env file {env_file}")
    settings = load_settings()
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "sk-file"
    assert "sk-file" not in repr(settings) and "sk-file" not in str(settings.api_key)


def test_defaults_without_any_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("QWENOPS_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    settings = load_settings()
    assert (settings.profile, settings.profiles_dir, settings.api_key, settings.base_url) == ("cpu-tiny", None, None,
                                                                                             None)
    assert settings.state_dir == tmp_path / "qwenops"


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_a_named_env_file_must_exist(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "conf"
    if kind == "directory":
        target.mkdir()
    monkeypatch.setenv(ENV_FILE_VARIABLE, str(target))
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.field == ENV_FILE_VARIABLE
    result = CliRunner().invoke(cli, ["render", "flags", "-p", "4090d"], catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {ENV_FILE_VARIABLE}: {target} is ")


def test_an_env_file_of_too_many_lines_is_refused_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit 7: 140,000 short lines (under the 1 MiB cap) held every command for minutes in python-dotenv's variable
    expansion (quadratic). More lines than MAX_ENV_FILE_ENTRIES is refused, naming the file; a real one loads."""
    import time

    from qwenops.untrusted import MAX_ENV_FILE_ENTRIES

    target = tmp_path / "qwenops.env"
    target.write_text("A=1\n" * 140_000)  # 560 KB
    monkeypatch.setenv(ENV_FILE_VARIABLE, str(target))
    started = time.monotonic()
    with pytest.raises(SettingsError, match=f"more than {MAX_ENV_FILE_ENTRIES:,} lines") as caught:
        load_settings()
    assert caught.value.field == ENV_FILE_VARIABLE and time.monotonic() - started < 60
    target.write_text("# a comment\n\nQWENOPS_PROFILE=cpu-tiny\n" + "".join(f"X{i}=1\n" for i in range(1000)))
    assert load_settings().profile == "cpu-tiny"


def test_without_a_named_env_file_a_missing_dot_env_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_FILE_VARIABLE)
    monkeypatch.chdir(tmp_path)
    assert load_settings().profile == "cpu-tiny"
    (tmp_path / ".env").write_text("QWENOPS_PROFILE=4090d\n")
    assert load_settings().profile == "4090d"


@pytest.mark.parametrize("how", ["another user's", "writable by every user", "writable by its group"])
def test_a_dot_env_someone_else_controls_is_not_read(how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """./.env is read unnamed, so in /tmp or a shared checkout another user's file would set where the key goes."""
    import os

    from qwenops.config.settings import SettingsWarning

    monkeypatch.delenv(ENV_FILE_VARIABLE)
    monkeypatch.chdir(tmp_path)
    dot_env = tmp_path / ".env"
    dot_env.write_text("QWENOPS_BASE_URL=http://evil.example:8000\nQWENOPS_PROFILE=4090d\n")
    if how == "another user's":
        if os.getuid() != 0:
            pytest.skip("only root can give a file to another user")
        os.chown(dot_env, 54321, 54321)
    elif how == "writable by its group":
        # A group others may be in (audit 9); a user's private group under umask 002 is fine (below).
        if os.getuid() != 0:
            pytest.skip("only root can give a file to a group it is not in")
        os.chown(dot_env, 0, 100)
        dot_env.chmod(0o664)
    else:
        dot_env.chmod(0o666)
    with pytest.warns(SettingsWarning, match=f"./.env is {how}, so it is not read"):
        assert load_settings().profile == "cpu-tiny"
    monkeypatch.setenv(ENV_FILE_VARIABLE, str(dot_env))  # named: the user's own choice
    assert load_settings().profile == "4090d"


def test_a_dot_env_is_checked_and_read_on_one_descriptor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file swapped in between the owner check and the read was read (audit 9: 472 races won of 59,913): what is
    read is what was checked, and a FIFO there is no env file, never waited on."""
    import os

    from qwenops.config import settings as module

    monkeypatch.delenv(ENV_FILE_VARIABLE)
    monkeypatch.chdir(tmp_path)
    dot_env = tmp_path / ".env"
    dot_env.write_text("QWENOPS_PROFILE=4090d\n")
    real_own_file = module._own_file

    def checked_then_swapped(path: Path) -> bytes | None:
        raw = real_own_file(path)
        dot_env.unlink()
        dot_env.write_text("QWENOPS_BASE_URL=http://evil.example:8000\nQWENOPS_PROFILE=4090d-fp8\n")
        return raw

    monkeypatch.setattr(module, "_own_file", checked_then_swapped)
    settings = load_settings()
    assert settings.profile == "4090d" and "evil" not in str(settings.base_url)
    monkeypatch.setattr(module, "_own_file", real_own_file)
    dot_env.unlink()
    os.mkfifo(dot_env)
    assert load_settings().profile == "cpu-tiny"  # at once: nothing waits for a writer


@pytest.mark.parametrize("secret", ["QWENOPS_API_KEY", "QWENOPS_GATEWAY_TOKEN"])
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_env_file_with_the_key_readable_by_others_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             mode: int, secret: str) -> None:
    env_file = tmp_path / "q.env"
    env_file.write_text(f"{secret}=sk-file\n")
    env_file.chmod(mode)
    monkeypatch.setenv(ENV_FILE_VARIABLE, str(env_file))
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.one_line() == (
        f"QWENOPS_ENV_FILE: {env_file} holds {secret} but its group or others can read it "
        f"(mode {mode:o}) (chmod 600 {env_file})")
    assert "sk-file" not in caught.value.one_line()


def test_env_file_without_the_key_may_be_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "q.env"
    env_file.write_text("QWENOPS_PORT=9000\nQWENOPS_API_KEY=\n")  # an empty key is no key
    env_file.chmod(0o644)
    monkeypatch.setenv(ENV_FILE_VARIABLE, str(env_file))
    assert environment()["QWENOPS_PORT"].value == "9000"


PROBES = Path(__file__).resolve().parents[1] / "data" / "probes"
PURE_COMMANDS = [
    ["profiles", "list"], ["profiles", "show", "4090d"], ["render", "flags", "--profile", "4090d"],
    ["render", "script", "--profile", "4090d"], ["render", "systemd", "--profile", "4090d"],
    ["plan", "--profile", "4090d", "--probe-file", str(PROBES / "rtx4090d-cuda124.json")],
]


@pytest.mark.parametrize("args", [["--help"], *PURE_COMMANDS], ids=lambda a: " ".join(a[:2]))
def test_each_command_reads_the_env_file_once(args: list[str], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import qwenops.config.settings as settings_module

    env_file = tmp_path / "qwenops.env"
    env_file.write_text("QWENOPS_MAX_NUM_SEQS=4\n")
    monkeypatch.setenv(ENV_FILE_VARIABLE, str(env_file))
    reads: list[Path] = []
    real = settings_module._read_env_file

    def counted(path: Path, raw: bytes | None = None) -> dict[str, Value]:
        reads.append(path)
        return real(path, raw)

    monkeypatch.setattr(settings_module, "_read_env_file", counted)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (0, 1), result.output  # plan's verdict may be "does not fit"
    assert reads == ([] if args == ["--help"] else [env_file])


def test_profiles_list_reads_each_profile_file_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import qwenops.config.loader as loader_module

    reads: list[Path] = []
    real = loader_module._read_yaml

    def counted(path: Path) -> dict[str, object]:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(loader_module, "_read_yaml", counted)
    result = CliRunner().invoke(cli, ["profiles", "list", "--json"])
    assert result.exit_code == 0, result.output
    listed = [p["file"] for p in json.loads(result.output)["data"]["profiles"]]
    assert sorted(map(str, reads)) == sorted(listed)  # 4090d-fp8 and the offload one extend 4090d


def test_read_once_rereads_what_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from qwenops.config.settings import read_once

    env_file = tmp_path / "qwenops.env"
    env_file.write_text("QWENOPS_PORT=8001\n")
    monkeypatch.setenv(ENV_FILE_VARIABLE, str(env_file))
    with read_once():
        first = environment()
        first["QWENOPS_PORT"] = Value("mutated by a caller", "test")
        assert environment()["QWENOPS_PORT"].value == "8001"  # a copy each time
        monkeypatch.setenv("QWENOPS_MAX_NUM_SEQS", "3")
        assert environment()["QWENOPS_MAX_NUM_SEQS"].value == "3"  # the environment changed: read again
        env_file.write_text("QWENOPS_PORT=8002\n")
        os.utime(env_file, ns=(0, 0))
        assert environment()["QWENOPS_PORT"].value == "8002"  # the file changed: read again
    env_file.write_text("QWENOPS_PORT=8003\n")
    assert environment()["QWENOPS_PORT"].value == "8003"


def test_read_once_checks_a_chmodded_env_file_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from qwenops.config.settings import read_once

    env_file = tmp_path / "qwenops.env"
    env_file.write_text("QWENOPS_API_KEY=sk-private\n")
    env_file.chmod(0o600)
    monkeypatch.setenv(ENV_FILE_VARIABLE, str(env_file))
    with read_once():
        assert environment()["QWENOPS_API_KEY"].value == "sk-private"
        env_file.chmod(0o644)  # the same bytes and mtime: only the mode (and ctime) changed
        with pytest.raises(SettingsError, match="group or others can read it"):
            environment()


@pytest.mark.parametrize("variable", ["QWENOPS_STATE_DIR", "QWENOPS_PROFILES_DIR", "QWENOPS_ENV_FILE"])
@pytest.mark.parametrize(("value", "why"), [("/tmp/a\nexport LD_PRELOAD=/tmp/x.so\n#", "a line break"),
                                            ("/tmp/\x1b[31mred", "U+001B"), ("/tmp/\u202eevil", "U+202E"),
                                            ("/a" * 3000, "a path of 6,000 characters")])
def test_a_path_setting_that_no_unit_or_script_can_hold_is_refused(variable: str, value: str, why: str) -> None:
    """The state dir is expanded into the model path of rendered units and scripts after the profile was
    checked: a line break there was an internal error in `render script`, and three lines in `render flags`
    (audit 4). Every path setting is now checked as it is read."""
    result = CliRunner().invoke(cli, ["render", "flags", "-p", "cpu-tiny"], env={variable: value})
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {variable}:") and why in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["status"], ["status", "--json"], ["troubleshoot", "--no-host", "--json"],
                                  ["smoke-stream"], ["gateway", "--check"]], ids=" ".join)
@pytest.mark.parametrize("key", ["sk-live-SECRET123456\r", "sk-live-SECRET123456\n", "ключ-SECRET123456"])
def test_a_key_no_header_can_carry_is_refused_before_any_request_and_never_printed(args: list[str], key: str) -> None:
    """`export QWENOPS_API_KEY=$(cat key.txt)` of a CRLF file keeps the CR: httpx refused the header and
    status and troubleshoot printed its message, the key in it (audit 4). Every command checks the key once."""
    env = {"QWENOPS_BASE_URL": "http://127.0.0.1:9", "QWENOPS_API_KEY": key}
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 2, result.output
    assert "SECRET" not in result.stdout + result.stderr
    assert "QWENOPS_API_KEY" in result.stdout + result.stderr
