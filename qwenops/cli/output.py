"""The one renderer: a `CommandResult` becomes human text (rich) or exactly one JSON envelope.

Results go to stdout, progress and errors to stderr, so `qwenops X --json | jq` always gets one
document. rich already honours NO_COLOR and drops styling when stdout is not a terminal.

Untrusted text (a log line, a profile's description, a server's answer, a file name) is made safe for
the terminal here, once, for every view: see `_Printable`.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from qwenops.errors import QwenopsError
from qwenops.results import CommandResult, ErrorInfo

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
    from rich.table import Table

# A view turns a command's data into something rich can print (a str, a Table, a Group ...).
View = Callable[[Any], "RenderableType"]


# A pipe, a file or a log collector has no width: rich would assume 80 columns and fold table cells
# mid-word, so anything not a terminal gets lines as long as their content, unless COLUMNS says otherwise.
_UNBOUNDED = 1_000_000


def _console(*, stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else _UNBOUNDED
    # soft_wrap: never break a rendered command line or path in the middle.
    return _safe_console_class()(stderr=stderr, soft_wrap=True, highlight=False, width=width)


@functools.cache
def _safe_console_class() -> type[Console]:
    """rich's Console whose every print goes through _Printable: the live consoles (serve's, which echoes
    the server's own output lines, tune's progress, smoke-stream's) print untrusted text too, and they
    print through this console, not through emit(). Built on first use: rich stays unimported until a
    command prints."""
    from rich.console import Console

    class SafeConsole(Console):
        def print(self, *objects: Any, markup: bool | None = None, emoji: bool | None = None,
                  highlight: bool | None = None, **kwargs: Any) -> None:
            from rich.control import Control

            safe = [
                item if isinstance(item, Control)  # cursor moves of a live display: rich's own, kept
                else _Printable(self.render_str(str(item), markup=markup, emoji=emoji, highlight=highlight)
                                if isinstance(item, str) or not _is_renderable(item) else item)
                for item in objects
            ]
            super().print(*safe, highlight=highlight, **kwargs)

    return SafeConsole


def safe_renderable(renderable: RenderableType) -> RenderableType:
    """RENDERABLE with every control sequence gone from its text: for what a live display (rich's Live)
    draws, which it renders itself rather than through print."""
    return _Printable(renderable)


def _is_renderable(item: object) -> bool:
    return hasattr(item, "__rich_console__") or hasattr(item, "__rich__")


class _Printable:
    """A view's renderable with every control sequence gone from its text, rich's own styling kept.

    Why here, on what rich is about to write, and not on the result's data before the view sees it: the
    data is any shape (dataclasses, pydantic models, dicts, Paths, enums), a view may compute text from
    it, format it, read more, or build rich Text itself, and a new view would be one missed type away
    from printing an escape sequence. Every character a view puts on the terminal passes through
    rich's render as Segments, whose text is the view's and whose style is rich's; so each segment's
    text loses its control sequences (qwenops.untrusted.printable) and the styling, which rich turns
    into SGR codes itself at write time, stays. Control segments (cursor moves, titles) are dropped: a
    printed result has no use for them, and a window title is exactly what a hostile string wants.
    The cost: a table measured its columns with the hostile text still in it, so a row holding an
    escape sequence may be drawn wider than it needs; safe, only untidy, and only for such a row.
    """

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.segment import Segment

        from qwenops.untrusted import printable

        for segment in console.render(self.renderable, options):
            if segment.control:
                continue
            style = segment.style
            if style is not None and style.link is not None and printable(style.link) != style.link:
                style = style.update_link(None)
            yield Segment(printable(segment.text), style)


class PlainTable:
    """The table every text view is drawn with (qwenops.cli.views.tables.table): rich draws it (`__rich__`,
    SIMPLE_HEAD, title on the left, cells folded), and on a pipe emit() writes the very same lines itself
    when the table is plain (`plain_lines`), which spares a pure command importing rich (~0.02 s of CPU)."""

    def __init__(self, columns: Sequence[str], rows: Iterable[Sequence[object]], *, title: str | None = None) -> None:
        self.columns = tuple(columns)
        self.rows = [tuple("" if cell is None else _one_line(str(cell)) for cell in row) for row in rows]
        self.title = title

    def __rich__(self) -> Table:
        from rich import box
        from rich.table import Table

        out = Table(title=self.title, box=box.SIMPLE_HEAD, title_justify="left")
        for column in self.columns:
            out.add_column(column, overflow="fold")
        for row in self.rows:
            out.add_row(*row)
        return out

    def plain_lines(self) -> list[str] | None:
        """The lines rich would print on a pipe (unbounded width, no colour; trailing blanks gone), or None
        when rich could print anything else: a cell or title with markup ('['), a possible :emoji: code, a
        character that is not printable ASCII (wide, combining, control), a row not as wide as the header,
        or an environment that makes rich style or size a pipe's output."""
        texts = [*self.columns, *(cell for row in self.rows for cell in row), self.title or ""]
        if (any(not _PLAIN_CELL.fullmatch(text) or _EMOJI_CODE.search(text) for text in texts)
                or any(len(row) != len(self.columns) for row in self.rows)
                or any(name in os.environ for name in _RICH_PIPE_VARIABLES)):
            return None
        widths = [max([len(column), *(len(row[i]) for row in self.rows)]) for i, column in enumerate(self.columns)]

        def line(cells: Sequence[str]) -> str:
            return ("  " + "   ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))).rstrip()

        rule = " " + "\u2500" * (sum(widths) + 3 * len(widths) - 1)
        head = [self.title.rstrip()] if self.title else []
        return [*head, "", line(self.columns), rule, *(line(row) for row in self.rows), ""]


class PlainGroup:
    """Tables and lines of text one after another (rich's Group), drawn as PlainTable is: by rich (`__rich__`),
    and on a pipe by emit() itself when every part is plain (`plain_lines`). Texts are plain text, not markup."""

    def __init__(self, *parts: PlainTable | str) -> None:
        self.parts = parts

    def __rich__(self) -> RenderableType:
        from rich.console import Group
        from rich.markup import escape

        return Group(*(escape(part) if isinstance(part, str) else part for part in self.parts))

    def plain_lines(self) -> list[str] | None:
        """The lines rich would print on a pipe, or None when rich could print anything else (PlainTable's rules,
        for each table and each text)."""
        if any(name in os.environ for name in _RICH_PIPE_VARIABLES):
            return None
        lines: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                if not _PLAIN_CELL.fullmatch(part) or _EMOJI_CODE.search(part):
                    return None
                lines.append(part.rstrip())
                continue
            drawn = part.plain_lines()
            if drawn is None:
                return None
            lines += drawn
        return lines


def _one_line(cell: str) -> str:
    """A cell is one line: a line break in it (a server's error text, a log line) is shown as ⏎, so that no
    text a cell quotes can add lines that read as other rows or checks of the report."""
    if not any(mark in cell for mark in "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"):
        return cell
    return " \u23ce ".join(part.strip() for part in _LINE_BREAK.split(cell.strip()))


_LINE_BREAK = re.compile("\r\n|[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
# What rich prints as itself in a table cell: printable ASCII without markup's '['.
_PLAIN_CELL = re.compile(r"[ -Z\\-~]*")
_EMOJI_CODE = re.compile(r":\S*?:")
# Variables under which rich colours, sizes or treats as a terminal what is a pipe.
_RICH_PIPE_VARIABLES = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")


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
            from qwenops.untrusted import printable

            # Plain text (a command line, a script) needs no rich: print it as is, less control sequences.
            shown = printable(shown)
            sys.stdout.write(shown if shown.endswith("\n") else shown + "\n")
            sys.stdout.flush()
        elif sys.stdout.isatty():
            stdout_console().print(_Printable(shown))
        elif isinstance(shown, (PlainTable, PlainGroup)) and (lines := shown.plain_lines()) is not None:
            sys.stdout.write("".join(line + "\n" for line in lines))
            sys.stdout.flush()
        else:
            console = stdout_console()
            with console.capture() as captured:
                console.print(_Printable(shown))
            # rich pads every cell to its column's width; a pipe gets no trailing blanks.
            sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
            sys.stdout.flush()
    for error in result.errors:
        print_error(error)


def print_error(error: ErrorInfo | QwenopsError) -> None:
    """One line on stderr: `error: field: message (fix)`; the message often quotes untrusted text (a
    path, a value, a tool's output), so it loses every control sequence first."""
    from qwenops.untrusted import printable

    info = ErrorInfo.from_exception(error) if isinstance(error, QwenopsError) else error
    text = f"{info.field}: {info.message}" if info.field else info.message
    if info.hint:
        text = f"{text} ({info.hint})"
    text = " ".join(printable(text, keep_newlines=False).split())
    if not sys.stderr.isatty() and _plain_line(text):
        # What rich writes for it on a pipe (no colour there), without importing rich (~0.02 s of CPU).
        sys.stderr.write(f"error: {text}\n")
        sys.stderr.flush()
        return
    from rich.markup import escape

    stderr_console().print(f"[bold red]error:[/] {escape(text)}")


def _plain_line(text: str) -> bool:
    """Whether rich prints TEXT (escaped) on a pipe as it is: printable ASCII but the backslash (markup's '['
    too: escaped, it prints as itself; a backslash before a '[' rich drops), no possible :emoji: code, no
    variable under which rich styles or sizes a pipe."""
    return (_PLAIN_LINE.fullmatch(text) is not None and not _EMOJI_CODE.search(text)
            and not any(name in os.environ for name in _RICH_PIPE_VARIABLES))


_PLAIN_LINE = re.compile(r"[ -\[\]-~]*")


def emit_error(command: str, error: QwenopsError, *, json_mode: bool) -> None:
    """Report an error that ended a command before it produced a result."""
    if json_mode:
        result = CommandResult(
            command=command, ok=False, errors=(ErrorInfo.from_exception(error),), failure_code=error.exit_code
        )
        emit(result, json_mode=True)
    else:
        print_error(error)
