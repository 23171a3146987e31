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


# A group of tables and texts (output.PlainGroup, plan's view) on a pipe: the same lines rich prints for it.

def test_random_plain_groups_match_rich(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from qwenops.cli.output import PlainGroup

    rng = random.Random(26)
    alphabet = string.ascii_letters + string.digits + " .,;:/-_()]{}<>=+*'\"\\~"
    extra = ["[bold]x[/]", ":smile:", "wide 漢字", "tab\there", "two\nlines", "  lead and trail  ", "", "\\[x]"]

    def text() -> str:
        return rng.choice(extra) if rng.random() < 0.1 else "".join(rng.choices(alphabet, k=rng.randint(0, 60)))

    groups = []
    for _ in range(60):
        parts: list[PlainTable | str] = []
        for _ in range(rng.randint(1, 5)):
            if rng.random() < 0.3:
                columns = ["".join(rng.choices(alphabet, k=rng.randint(0, 6))) for _ in range(rng.randint(1, 3))]
                rows = [tuple("".join(rng.choices(alphabet, k=rng.randint(0, 20))) for _ in columns)
                        for _ in range(rng.randint(0, 4))]
                parts.append(PlainTable(columns, rows, title=rng.choice([None, text()])))
            else:
                parts.append(text())
        groups.append(PlainGroup(*parts))
    mine = [_printed(group, capsys) for group in groups]  # type: ignore[arg-type]
    assert sum(group.plain_lines() is not None for group in groups) > 20  # the plain path is exercised
    monkeypatch.setattr(PlainGroup, "plain_lines", lambda self: None)
    monkeypatch.setattr(PlainTable, "plain_lines", lambda self: None)
    assert mine == [_printed(group, capsys) for group in groups]  # type: ignore[arg-type]


def test_error_lines_on_a_pipe_are_richs_lines(capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from qwenops.errors import BadInputError

    monkeypatch.delenv("COLUMNS", raising=False)
    rng = random.Random(27)
    alphabet = string.ascii_letters + string.digits + " .,;:/-_()[]{}<>=+*'\"\\~`@#$%^&|?!"
    special = ["[bold]x[/bold]", "\\[x]", "[/]", ":smile:", "a:b:c", "wide 漢字", "tab\there", "ctl\x1b[31mred",
               "  spaced   out  ", "", "x" * 300, "['auto', 'fp8']", "\\", "[red"]
    errors = []
    for _ in range(600):
        message = rng.choice(special) if rng.random() < 0.3 else "".join(rng.choices(alphabet, k=rng.randint(0, 80)))
        errors.append(BadInputError(message, field=rng.choice([None, "port", "probe-file.gpu.devices.0.name"]),
                                    hint=rng.choice([None, "a hint [x]", ":+1:"])))

    def printed() -> list[str]:
        lines = []
        for error in errors:
            output.print_error(error)
            lines.append(capsys.readouterr().err)
        return lines

    mine = printed()
    assert sum(output._plain_line(line.rstrip("\n")) for line in mine) > 200  # the plain path is exercised
    monkeypatch.setattr(output, "_plain_line", lambda text: False)
    assert mine == printed()
