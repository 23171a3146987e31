"""The result cache of the pure commands: same output as a fresh run, and never stale."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from qwenops.cli import _memo


def qwenops(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "qwenops", *args]
    return subprocess.run(argv, check=False, capture_output=True, text=True, env={**os.environ, **(env or {})})


@pytest.fixture
def profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "profiles"
    directory.mkdir()
    (directory / "mine.yaml").write_text("extends: 4090d\nmax_num_seqs: 4\n")
    monkeypatch.setenv("QWENOPS_PROFILES_DIR", str(directory))
    return directory


def cache_files() -> list[Path]:
    return sorted(_memo.cache_dir().glob("*.out"))


def test_second_run_is_served_from_cache_with_identical_output(profiles: Path) -> None:
    first = qwenops("render", "flags", "-p", "mine")
    assert first.returncode == 0 and "--max-num-seqs 4" in first.stdout
    assert len(cache_files()) == 1
    second = qwenops("render", "flags", "-p", "mine")
    assert second.stdout == first.stdout and second.returncode == 0
    assert qwenops("render", "flags", "-p", "mine", env={"QWENOPS_NO_CACHE": "1"}).stdout == first.stdout


def test_editing_a_profile_invalidates(profiles: Path) -> None:
    assert "--max-num-seqs 4" in qwenops("render", "flags", "-p", "mine").stdout
    (profiles / "mine.yaml").write_text("extends: 4090d\nmax_num_seqs: 6\n")
    os.utime(profiles / "mine.yaml", ns=(1, 1))  # even a file whose mtime goes backwards
    assert "--max-num-seqs 6" in qwenops("render", "flags", "-p", "mine").stdout


def test_environment_and_arguments_are_part_of_the_key(profiles: Path) -> None:
    assert "--port 8000" in qwenops("render", "flags", "-p", "mine").stdout
    assert "--port 8001" in qwenops("render", "flags", "-p", "mine", env={"QWENOPS_PORT": "8001"}).stdout
    assert "--port 8002" in qwenops("render", "flags", "-p", "mine", "--set", "port=8002").stdout
    assert '"command": "render flags"' in qwenops("render", "flags", "-p", "mine", "--json").stdout


def test_errors_and_side_effects_are_never_cached(profiles: Path, tmp_path: Path) -> None:
    assert qwenops("render", "flags", "-p", "nope").returncode == 2
    assert cache_files() == []
    out = tmp_path / "s.sh"
    assert qwenops("render", "script", "-p", "mine", "-o", str(out)).returncode == 0
    out.unlink()
    assert qwenops("render", "script", "-p", "mine", "-o", str(out)).returncode == 0
    assert out.exists()  # the second run wrote the file again, it was not answered from cache
    assert cache_files() == []


def test_only_pure_commands_are_cacheable() -> None:
    assert _memo.cacheable(["render", "flags", "-p", "x"])
    assert _memo.cacheable(["profiles", "list", "--json"])
    assert not _memo.cacheable(["profiles", "show", "x"])  # shows whether a secret is set: always fresh
    assert not _memo.cacheable(["render", "script", "--output=x.sh"])
    assert not _memo.cacheable(["render", "flags", "--help"])


@pytest.mark.parametrize("spelling", [["-o", "{}"], ["-o{}"], ["--output", "{}"], ["--output={}"]])
def test_every_spelling_of_output_runs_the_command(spelling: list[str], profiles: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.sh"
    args = ["render", "script", "-p", "mine", *(word.format(out) for word in spelling)]
    assert not _memo.cacheable(args)
    for _ in range(2):
        out.unlink(missing_ok=True)
        assert qwenops(*args).returncode == 0
        assert out.exists()


def test_a_broken_setting_is_reported_by_the_command_not_the_cache(tmp_path: Path) -> None:
    done = qwenops("render", "flags", env={"QWENOPS_PROFILES_DIR": str(tmp_path / "missing")})
    assert done.returncode == 2
    assert done.stderr.startswith("error: QWENOPS_PROFILES_DIR") and "Traceback" not in done.stderr
