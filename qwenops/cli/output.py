"""The one renderer: a `CommandResult` becomes human text (rich) or exactly one JSON envelope.

Results go to stdout, progress and errors to stderr, so `qwenops X --json | jq` always gets one
document. rich already honours NO_COLOR and drops styling when stdout is not a terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qwenops.errors import QwenopsError
from qwenops.results import CommandResult, ErrorInfo

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

# A view turns a command's data into something rich can print (a str, a Table, a Group ...).
View = Callable[[Any], "RenderableType"]


def stdout_console() -> Console:
    from rich.console import Console

    # soft_wrap: never break a rendered command line or path in the middle when piped.
    return Console(soft_wrap=True, highlight=False)


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, highlight=False)


def emit(result: CommandResult, *, json_mode: bool, view: View | None = None) -> None:
    """Print a result once, as JSON or as text, and its errors (text mode) on stderr."""
    if json_mode:
        sys.stdout.write(json.dumps(result.envelope(), indent=2, sort_keys=False) + "\n")
        sys.stdout.flush()
        return
    if result.data is not None and view is not None:
        shown = view(result.data)
        if isinstance(shown, str):
            # Plain text (a command line, a script) needs no rich: print it as is, exactly.
            sys.stdout.write(shown if shown.endswith("\n") else shown + "\n")
            sys.stdout.flush()
        else:
            stdout_console().print(shown)
    for error in result.errors:
        print_error(error)


def print_error(error: ErrorInfo | QwenopsError) -> None:
    """One line on stderr: `error: field: message (fix)`."""
    info = ErrorInfo.from_exception(error) if isinstance(error, QwenopsError) else error
    text = f"{info.field}: {info.message}" if info.field else info.message
    if info.hint:
        text = f"{text} ({info.hint})"
    from rich.markup import escape

    stderr_console().print(f"[bold red]error:[/] {escape(' '.join(text.split()))}")


def emit_error(command: str, error: QwenopsError, *, json_mode: bool) -> None:
    """Report an error that ended a command before it produced a result."""
    if json_mode:
        result = CommandResult(
            command=command, ok=False, errors=(ErrorInfo.from_exception(error),), failure_code=error.exit_code
        )
        emit(result, json_mode=True)
    else:
        print_error(error)
