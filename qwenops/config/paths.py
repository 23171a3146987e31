"""Where profiles are found: QWENOPS_PROFILES_DIR, the checkout's configs/profiles, the wheel's copy."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent


def shipped_dirs(name: str) -> list[Path]:
    """configs/NAME of a source checkout, then the copy a wheel carries as qwenops/_NAME (pyproject.toml)."""
    return [PACKAGE.parent / "configs" / name, PACKAGE / f"_{name}"]


def profile_dirs(extra: Path | None = None) -> list[Path]:
    """Where profiles are looked up, first match wins: EXTRA (default: QWENOPS_PROFILES_DIR from the
    environment or env file), the source checkout's configs/profiles, the copy a wheel carries, then
    the state dir's profiles/ (what `serve --auto-fit` saved: `NAME-fitted.yaml`)."""
    from qwenops.config.settings import load_settings

    settings = load_settings()
    if extra is None:
        extra = settings.profiles_dir
    if extra is not None and not _is_dir(extra, "QWENOPS_PROFILES_DIR"):
        from qwenops.errors import SettingsError

        raise SettingsError(f"{extra} is not a directory", field="QWENOPS_PROFILES_DIR")
    candidates = [extra] if extra is not None else []
    candidates += [*shipped_dirs("profiles"), settings.state_dir / "profiles"]
    dirs: list[Path] = []
    for directory in candidates:
        if _is_dir(directory, "QWENOPS_STATE_DIR") and directory not in dirs:
            dirs.append(directory)
    return dirs


def _is_dir(path: Path, variable: str) -> bool:
    """Path.is_dir, except that a path the system refuses to look up (too long, a symlink loop, no
    permission) is bad input naming VARIABLE instead of an OSError."""
    import stat

    try:
        return stat.S_ISDIR(path.stat().st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        from qwenops.errors import SettingsError

        shown = str(path) if len(str(path)) <= 160 else f"{str(path)[:80]}…{str(path)[-60:]}"
        raise SettingsError(f"cannot look at {shown}: {exc.strerror or exc}", field=variable) from None


def available_profiles(extra_dir: Path | None = None) -> dict[str, Path]:
    return profiles_in(profile_dirs(extra_dir))


def profiles_in(dirs: list[Path]) -> dict[str, Path]:
    """Each profile name in DIRS (profile_dirs' order, first match wins) and its file."""
    found: dict[str, Path] = {}
    for directory in dirs:
        for path in sorted(directory.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found
