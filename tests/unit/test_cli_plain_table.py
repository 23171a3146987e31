"""A table printed to a pipe without rich (output.PlainTable.plain_lines) is byte for byte what rich prints."""

from __future__ import annotations

import random
import string

import pytest

from qwenops.cli import output
from qwenops.cli.output import PlainTable
from qwenops.results import CommandResult

TABLES = [
    (["profile", "engine", "model", "description"], [("4090d", "vllm", "Qwen/Qwen3-14B-AWQ", "the box")], None),
    (["", "value", "from"], [("GPU budget", "21.85 GiB", "gpu_memory_utilization 0.95 x 23 GiB")], "plan (vLLM 0.32)"),
    (["a", "bb"], [], None),
    (["", ""], [("", "")], "a title much wider than the table it heads"),
    (["x"], [("trailing   ",), ("  leading",), ("",)], "t"),
    # Not plain: rich's own path draws them (markup, an emoji code, wide and control characters).
    (["a"], [("[bold]x[/bold]",)], None),
    (["a"], [(":smile: or :+1:",)], None),
    (["a"], [("wide 漢字 é",)], None),
    (["a"], [("tab\there",)], "bell\a"),
]


def _printed(table: PlainTable, capsys: pytest.CaptureFixture[str]) -> str:
    output.emit(CommandResult(command="t", data=table), json_mode=False, view=lambda data: data)
    return capsys.readouterr().out


@pytest.mark.parametrize(("columns", "rows", "title"), TABLES)
def test_plain_lines_are_richs_lines(columns: list[str], rows: list[tuple[str, ...]], title: str | None,
                                     capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    table = PlainTable(columns, rows, title=title)
    mine = _printed(table, capsys)
    monkeypatch.setattr(PlainTable, "plain_lines", lambda self: None)
    assert mine == _printed(table, capsys)


def test_random_plain_tables_match_rich(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(25)
    alphabet = string.ascii_letters + string.digits + " .,;:/-_()]{}<>=+*'\"\\~"
    tables = []
    for _ in range(60):
        columns = ["".join(rng.choices(alphabet, k=rng.randint(0, 8))) for _ in range(rng.randint(1, 5))]
        rows = [tuple("".join(rng.choices(alphabet, k=rng.randint(0, 30))) for _ in columns)
                for _ in range(rng.randint(0, 6))]
        title = rng.choice([None, "".join(rng.choices(alphabet, k=rng.randint(0, 90)))])
        tables.append(PlainTable(columns, rows, title=title))
    mine = [_printed(table, capsys) for table in tables]
    assert sum(table.plain_lines() is not None for table in tables) > 20  # the plain path is exercised
    monkeypatch.setattr(PlainTable, "plain_lines", lambda self: None)
    assert mine == [_printed(table, capsys) for table in tables]


def test_a_pipe_rich_would_colour_is_left_to_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    table = PlainTable(["a"], [("b",)])
    assert table.plain_lines() is not None
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert table.plain_lines() is None
