"""The table every text view is drawn with."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from qwenops.cli.output import PlainTable


def table(columns: Sequence[str], rows: Iterable[Sequence[object]], *, title: str | None = None) -> PlainTable:
    """A SIMPLE_HEAD table, title on the left, cells folded: rich draws it, or emit() on a pipe when it is plain."""
    return PlainTable(columns, rows, title=title)
