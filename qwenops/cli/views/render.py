"""`render`: the command line, the script or the file itself on stdout, or where `-o` wrote it; a
monitoring file's notes on stderr."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qwenops.render.run import RenderedFile, RenderedFlags, RenderedMonitoring, RenderedScript


def flags_view(data: RenderedFlags) -> str:
    return data.command


def script_view(data: RenderedScript) -> str:
    return data.script


def file_view(data: RenderedFile) -> str:
    return data.text


def written_view(data: RenderedScript | RenderedFile) -> str:
    return f"wrote {data.path}"


def echo_notes(data: RenderedMonitoring) -> None:
    """What the operator must hear about a monitoring file (no saved SLO, no vLLM metrics), one line each."""
    import click

    for note in data.notes:
        click.echo(f"note: {note}", err=True)
