"""A result cache for the pure commands (`render flags`, `render script`, `profiles list`).

Their output is a function of the command line, the QWENOPS_* settings, the profile files and
qwenops' own code, yet producing it costs ~0.2 s, almost all of it importing pydantic to validate the
profile. Ops scripts call `qwenops render flags` in loops and prompts; so the first run stores its
exact stdout under a key that hashes every one of those inputs (file paths, sizes and mtimes, not
contents, as make and ccache do), and a later run with the same key prints it without importing
pydantic. Only successful runs are stored; errors are always computed afresh.
QWENOPS_NO_CACHE=1 turns it off; the benchmark reports cold and cached times side by side. Any problem
here (an unreadable env file, a missing profiles dir) just means no cache: the command itself runs
and reports it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

CACHEABLE = (("render", "flags"), ("render", "script"), ("profiles", "list"))
_FORMAT = "qwenops-memo-2"
_KEEP = 64  # newest results kept; older ones are pruned on store


def cacheable(args: list[str]) -> bool:
    """True for a pure command whose parsed options ask for no side effect (no --output, no --help).

    The decision uses the command's own Click parser, so every spelling (`-o F`, `-oF`, `--output=F`)
    is seen exactly as the command will see it.
    """
    if os.environ.get("QWENOPS_NO_CACHE") or len(args) < 2 or tuple(args[:2]) not in CACHEABLE:
        return False
    if any(arg in ("-h", "--help") for arg in args):
        return False
    import click

    from qwenops.cli import cli

    root = click.Context(cli, info_name="qwenops", resilient_parsing=True)
    group = cli.get_command(root, args[0])
    command = group.get_command(root, args[1]) if isinstance(group, click.Group) else None
    if command is None:
        return False
    with command.make_context(args[1], list(args[2:]), parent=root, resilient_parsing=True) as ctx:
        return ctx.params.get("output") is None


def _stat_line(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return f"{path}:-"
    return f"{path}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def _tree_lines(directory: Path, pattern: str) -> Iterator[str]:
    if directory.is_dir():
        for path in sorted(directory.rglob(pattern)):
            yield _stat_line(path)


def key(args: list[str]) -> str:
    from qwenops import __version__
    from qwenops.profile_paths import profile_dirs
    from qwenops.settings import env_file, environment

    env = environment()
    parts = [
        _FORMAT,
        __version__,
        sys.executable,
        json.dumps(args),
        json.dumps(sorted((k, v[0]) for k, v in env.items())),
        _stat_line(env_file()),
        # Output format depends on these: colour, width, terminal or pipe.
        json.dumps([os.environ.get(k) for k in ("NO_COLOR", "FORCE_COLOR", "TERM", "COLUMNS", "HOME",
                                                 "XDG_STATE_HOME")]),
        _terminal(),
        *_tree_lines(Path(__file__).resolve().parent.parent, "*.py"),
    ]
    for directory in profile_dirs():
        parts += list(_tree_lines(directory, "*.yaml"))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _terminal() -> str:
    """A terminal's width shapes rich tables; a pipe always gets the same layout."""
    if not sys.stdout.isatty():
        return "pipe"
    try:
        return f"tty {os.get_terminal_size(sys.stdout.fileno()).columns}"
    except OSError:
        return "tty"


def cache_dir() -> Path:
    from qwenops.settings import locations

    return locations().state_dir / "cache" / "cli"


def lookup(args: list[str]) -> str | None:
    """The stored stdout for ARGS, or None."""
    try:
        return (cache_dir() / f"{key(args)}.out").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def store(args: list[str], stdout: str) -> None:
    """Store a successful run's stdout; a read-only or full state dir just means no cache."""
    directory = cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, encoding="utf-8", suffix=".tmp") as tmp:
            tmp.write(stdout)
        Path(tmp.name).replace(directory / f"{key(args)}.out")
        stored = sorted(directory.glob("*.out"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for old in stored[_KEEP:]:
            old.unlink(missing_ok=True)
    except OSError:
        return
