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


# A pipe, a file or a log collector has no width: rich would assume 80 columns and fold table cells
# mid-word, so anything not a terminal gets lines as long as their content, unless COLUMNS says otherwise.
_UNBOUNDED = 1_000_000


def _console(*, stderr: bool) -> Console:
    import os

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else _UNBOUNDED
    # soft_wrap: never break a rendered command line or path in the middle.
    return Console(stderr=stderr, soft_wrap=True, highlight=False, width=width)


def stdout_console() -> Console:
    return _console(stderr=False)


def stderr_console() -> Console:
    return _console(stderr=True)


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
        elif sys.stdout.isatty():
            stdout_console().print(shown)
        else:
            console = stdout_console()
            with console.capture() as captured:
                console.print(shown)
            # rich pads every cell to its column's width; a pipe gets no trailing blanks.
            sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
            sys.stdout.flush()
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
