"""Pieces every command module shares: the `--json` option and result emission."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from qwenops.cli.output import View, emit
from qwenops.errors import ExitCode
from qwenops.results import CommandResult

F = TypeVar("F", bound=Callable[..., Any])

_JSON_KEY = "qwenops.json"
ARGV_KEY = "qwenops.argv"  # the root's raw arguments, stored by RootGroup.parse_args


def _remember_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    # ctx.meta is shared by the whole context chain, so the root's error boundary can see it.
    ctx.meta[_JSON_KEY] = value
    return value


def json_option(func: F) -> F:
    """Add `--json`: print exactly one JSON envelope on stdout instead of text."""
    return click.option(
        "--json",
        "json_mode",
        is_flag=True,
        is_eager=True,
        expose_value=True,
        callback=_remember_json,
        help="Print one JSON document (the qwenops envelope) instead of text.",
    )(func)


def json_requested(ctx: click.Context) -> bool:
    if ctx.meta.get(_JSON_KEY):
        return True
    # A usage error can stop parsing before the --json callback ran; the raw arguments still tell.
    return "--json" in ctx.meta.get(ARGV_KEY, ())


def command_name(ctx: click.Context) -> str:
    """The command as typed, less the program name and options: "render flags"."""
    names: list[str] = []
    group: click.Command | None = ctx.command
    for part in ctx.meta.get(ARGV_KEY, ()):
        if not isinstance(group, click.Group) or part.startswith("-"):
            break
        group = group.get_command(ctx, part)
        if group is None:
            break
        names.append(part)
    return " ".join(names) or "qwenops"


def finish(result: CommandResult, *, json_mode: bool, view: View | None = None) -> None:
    """Print the result and exit with its code (0 when ok)."""
    emit(result, json_mode=json_mode, view=view)
    code = result.exit_code
    if code is not ExitCode.OK:
        raise click.exceptions.Exit(int(code))


def profile_option(func: F) -> F:
    """`--profile NAME` (default: $QWENOPS_PROFILE, else the embedded cpu-tiny)."""
    return click.option(
        "-p", "--profile", "profile", metavar="NAME",
        help="Profile name from configs/profiles (default: $QWENOPS_PROFILE or cpu-tiny).",
    )(func)


def override_option(func: F) -> F:
    """`--set FIELD=VALUE`, repeatable: the command line's layer of CLI > env > profile > default."""
    return click.option(
        "--set", "overrides", multiple=True, metavar="FIELD=VALUE",
        help="Override a profile field for this run, e.g. --set max_model_len=4096 (repeatable).",
    )(func)
