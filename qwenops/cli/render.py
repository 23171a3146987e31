"""`qwenops render flags|script`: the exact vLLM server command for a profile."""

from __future__ import annotations

from pathlib import Path

import click

from qwenops.cli._common import finish, json_option, override_option, profile_option
from qwenops.results import CommandResult


@click.group()
def render() -> None:
    """Render launch artefacts from a profile."""


@render.command("flags")
@profile_option
@override_option
@json_option
def flags_command(profile: str | None, overrides: tuple[str, ...], json_mode: bool) -> None:
    """Print the server command line, shell-quoted (OpenAI-compatible entrypoint)."""
    from qwenops.config.loader import parse_overrides
    from qwenops.render import render_flags

    data = render_flags(profile, parse_overrides(overrides))
    finish(CommandResult(command="render flags", data=data), json_mode=json_mode, view=lambda d: d.command)


@render.command("script")
@profile_option
@override_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the script here.")
@json_option
def script_command(profile: str | None, overrides: tuple[str, ...], output: Path | None, json_mode: bool) -> None:
    """Print (or write with -o) a start_api.sh that execs the server with one flag per line."""
    from qwenops.config.loader import parse_overrides
    from qwenops.render import render_script

    data = render_script(profile, parse_overrides(overrides), output)
    view = (lambda d: f"wrote {d.path}") if output else (lambda d: d.script)
    finish(CommandResult(command="render script", data=data), json_mode=json_mode, view=view)
