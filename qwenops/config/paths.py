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
    if extra is not None and not extra.is_dir():
        from qwenops.errors import SettingsError

        raise SettingsError(f"{extra} is not a directory", field="QWENOPS_PROFILES_DIR")
    candidates = [extra] if extra is not None else []
    candidates += [*shipped_dirs("profiles"), settings.state_dir / "profiles"]
    dirs: list[Path] = []
    for directory in candidates:
        if directory.is_dir() and directory not in dirs:
            dirs.append(directory)
    return dirs


def available_profiles(extra_dir: Path | None = None) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for directory in profile_dirs(extra_dir):
        for path in sorted(directory.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found
