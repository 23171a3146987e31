"""`qwenops profiles list|show`: what can be served, and where every value comes from."""

from __future__ import annotations

import click

from qwenops.cli._common import finish, json_option, override_option
from qwenops.results import CommandResult


@click.group()
def profiles() -> None:
    """List and inspect launch profiles (configs/profiles/*.yaml)."""


@profiles.command("list")
@json_option
def list_command(json_mode: bool) -> None:
    """List the profiles qwenops can serve."""
    from qwenops.cli.views.profiles import list_view
    from qwenops.config.settings import load_settings
    from qwenops.errors import ExitCode
    from qwenops.profiles.run import list_profiles
    from qwenops.results import ErrorInfo

    data = list_profiles(load_settings().profiles_dir)
    errors = tuple(
        ErrorInfo(code="profile_invalid", message=p.problem, field=p.name) for p in data.profiles if p.problem
    )
    result = CommandResult(
        command="profiles list", data=data, ok=data.ok, errors=errors, failure_code=ExitCode.BAD_INPUT
    )
    finish(result, json_mode=json_mode, view=list_view)


@profiles.command("show")
@click.argument("name")
@click.option("--sources", is_flag=True, help="Show where each value came from (CLI > env > profile > default).")
@override_option
@json_option
def show_command(name: str, sources: bool, overrides: tuple[str, ...], json_mode: bool) -> None:
    """Show profile NAME as it resolves here (environment and --set applied)."""
    from qwenops.cli.views.profiles import show_view
    from qwenops.config.loader import parse_overrides, resolve_profile
    from qwenops.config.settings import load_settings
    from qwenops.profiles.run import show_profile

    settings = load_settings()
    resolved = resolve_profile(name, cli_overrides=parse_overrides(overrides))
    data = show_profile(resolved, api_key_set=settings.api_key is not None)
    finish(
        CommandResult(command="profiles show", data=data),
        json_mode=json_mode,
        view=lambda view: show_view(view, with_sources=sources),
    )
