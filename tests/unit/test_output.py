"""The one renderer keeps untrusted text from driving the terminal: every control sequence in a result's
text (a log line, a profile's description) and in an error message is gone in text mode, whatever view
drew it; rich's own styling stays, and JSON escapes everything itself."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.table import Table

from qwenops.cli import cli
from qwenops.cli.output import emit, print_error
from qwenops.errors import BadInputError
from qwenops.results import CommandResult
from qwenops.untrusted import printable

# Each a way a hostile string drives a terminal: a window title (OSC 0), a hyperlink (OSC 8), erase the
# screen and move the cursor (CSI), a device control string (DCS), the 8-bit CSI (C1 U+009B), the bidi
# overrides of Trojan Source, the bell, backspaces that hide what came before, a bare ESC sequence (RIS).
HOSTILE = {
    "osc0": "\x1b]0;pwned title\x07",
    "osc8": "\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\",
    "csi": "\x1b[2J\x1b[1;1H",
    "dcs": "\x1bPq#0;2;0;0;0#0~~@@vv@@~~$\x1b\\",
    "c1": "\x9b31m\x9d0;c1 title\x9c",
    "bidi": "\u202eevil\u202c\u2066x\u2069",
    "bel": "ding\x07",
    "backspace": "secret\x08\x08\x08\x08\x08\x08",
    "ris": "\x1bc",
}
_SGR = re.compile(r"\x1b\[[0-9;]*m")
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def assert_safe(text: str, *, allow_sgr: bool = False) -> None:
    """No control character survives (rich's own colour codes, when asked for, aside)."""
    if allow_sgr:
        text = _SGR.sub("", text)
    found = _UNSAFE.search(text)
    assert found is None, f"U+{ord(found.group()):04X} reached the terminal in {text!r}"


@pytest.mark.parametrize("name", HOSTILE)
def test_printable_strips_every_kind(name: str) -> None:
    shown = printable(f"before {HOSTILE[name]} after")
    assert_safe(shown)
    assert shown.startswith("before ") and shown.endswith(" after")


def test_printable_drops_every_invisible_format_character() -> None:
    """A GPU or model name holding a zero-width space read as another name on the terminal (audit 4): every
    character of Unicode's category Cf, as this Python knows it, is dropped (the list is kept by hand)."""
    import unicodedata

    invisible = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Cf"]
    kept = [f"U+{ord(c):04X}" for c in invisible if printable(f"a{c}b") != "ab"]
    assert kept == []
    assert printable("NVIDIA RTX4090\u200b D") == "NVIDIA RTX4090 D"
    assert printable("one\u2028two\u2029three") == "one\ntwo\nthree"


def test_printable_replaces_an_undecodable_byte_of_a_file_name() -> None:
    name = b"log-\xff.txt".decode("utf-8", "surrogateescape")
    assert printable(name) == "log-\ufffd.txt"
    printable(name).encode("utf-8")  # writable to a UTF-8 terminal


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty", [False, True], ids=["pipe", "terminal"])
@pytest.mark.parametrize("shape", ["table", "str"])
def test_emit_strips_control_sequences_from_any_view(tty: bool, shape: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")
    out = _Terminal() if tty else io.StringIO()
    monkeypatch.setattr("sys.stdout", out)

    def view(data: dict[str, str]) -> object:
        if shape == "str":
            return "\n".join(f"{k}: {v}" for k, v in data.items())
        table = Table("kind", "text")
        for key, value in data.items():
            table.add_row(f"[bold]{key}[/]", value)  # a view that forgot to escape, and styles its own cells
        return table

    emit(CommandResult(command="x", data={k: f"<{v}>" for k, v in HOSTILE.items()}), json_mode=False,
         view=view)  # type: ignore[arg-type]
    shown = out.getvalue()
    assert_safe(shown, allow_sgr=True)
    for key in HOSTILE:
        assert key in shown
    if tty and shape == "table":
        assert _SGR.search(shown), "rich's own styling must survive"


def test_print_error_strips_control_sequences(capsys: pytest.CaptureFixture[str]) -> None:
    print_error(BadInputError("".join(HOSTILE.values()) + " \ud8ff", field="--log\x1b[2J", hint="fix \x9b1m"))
    err = capsys.readouterr().err
    assert_safe(err)
    assert err.startswith("error: --log: ") and err.count("\n") == 1


def test_json_mode_escapes_control_characters() -> None:
    out = io.StringIO()
    import sys

    real = sys.stdout
    sys.stdout = out
    try:
        emit(CommandResult(command="x", data={"t": "".join(HOSTILE.values())}), json_mode=True)
    finally:
        sys.stdout = real
    assert "\x1b" not in out.getvalue() and "\x9b" not in out.getvalue()
    assert json.loads(out.getvalue())["data"]["t"] == "".join(HOSTILE.values())


def test_troubleshoot_text_mode_shows_a_hostile_log_line_safely(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    hostile = "".join(HOSTILE.values())
    log.write_text(f"INFO starting\nERROR [Errno 98] error while attempting to bind on address: address already "
                   f"in use {hostile}\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["troubleshoot", "--log", str(log)], catch_exceptions=False)
    assert result.exit_code in (0, 1), result.stderr
    assert "address already in use" in result.stdout
    assert_safe(result.stdout)
    assert_safe(result.stderr)


def test_profiles_list_shows_a_hostile_description_safely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    description = "".join(HOSTILE.values()).replace("\\", "\\\\").replace('"', '\\"')
    escaped = json.dumps(description)[1:-1]  # YAML double-quoted strings take JSON's escapes
    (profiles / "hostile.yaml").write_text(f'extends: cpu-tiny\ndescription: "{escaped}"\n', encoding="utf-8")
    monkeypatch.setenv("QWENOPS_PROFILES_DIR", str(profiles))
    result = CliRunner().invoke(cli, ["profiles", "list"], catch_exceptions=False)
    assert result.exit_code in (0, 2), result.stderr
    assert "hostile" in result.stdout
    assert_safe(result.stdout)
    assert_safe(result.stderr)


def test_profiles_list_view_draws_a_hostile_description_safely(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the profile's own validation refuses, the list's view goes through the one renderer."""
    from qwenops.cli.views.profiles import list_view
    from qwenops.profiles.run import ProfileList, ProfileSummary

    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    rows = (ProfileSummary(name="hostile", file="/p/hostile.yaml", engine="vllm", model="m",
                           description="".join(HOSTILE.values())),
            ProfileSummary(name="broken", file="/p/broken.yaml", problem="bad \x1b]0;t\x07 value"))
    emit(CommandResult(command="profiles list", data=ProfileList(profiles=rows, directories=("/p",))),
         json_mode=False, view=list_view)
    assert "hostile" in out.getvalue() and "INVALID: bad" in out.getvalue()
    assert_safe(out.getvalue())


HOSTILE_LINE = "vLLM says \x1b]0;pwned\x07hi\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\ \x9b2J[bold]x[/bold]"


def test_serve_echoes_the_servers_own_lines_safely(capsys: pytest.CaptureFixture[str]) -> None:
    """serve's live console prints vLLM's output lines (which quote whatever a request or a model path
    holds) through the console, not through emit(): the same rule holds there."""
    from qwenops.cli.views.serve import ConsoleReporter

    reporter = ConsoleReporter()
    reporter.server_line(HOSTILE_LINE)
    reporter.on_note("note \x1b]0;title\x07done")
    reporter.close()
    err = capsys.readouterr().err
    assert "vLLM says " in err and "click [bold]x[/bold]" in err  # the text, markup left as text
    assert "qwenops note " in err and "pwned" not in err and "title" not in err
    assert "\x1b]" not in err and "\x9b" not in err and "\x07" not in err


def test_live_views_draw_the_servers_text_safely() -> None:
    """smoke-stream's live panel shows each stream's latest text from the server; rich's Live draws it
    itself, so the panel is made safe before Live sees it, and the text is never read as markup."""
    from rich.console import Console

    from qwenops.cli.views.smoke import LiveSmokeView
    from qwenops.stream.chunks import ChatDelta

    console = Console(file=io.StringIO(), force_terminal=True, width=200, color_system=None)
    view = LiveSmokeView(1, console)
    view.stream_started(0)
    view.stream_delta(0, ChatDelta(arrived_s=0.0, id="c", model="m", content=HOSTILE_LINE))
    with console.capture() as captured:
        console.print(view._render())
    shown = captured.get()
    assert "[bold]x[/bold]" in shown and "pwned" not in shown and "\x1b]" not in shown and "\x9b" not in shown


def test_a_table_cell_is_one_line_whatever_text_it_quotes() -> None:
    """A server's in-band error `boom\\nINFO: ... 200` added a line to smoke-stream's report that read as the
    server's (audit 4): a line break in a cell is shown as ⏎."""
    from qwenops.cli.output import PlainTable

    table = PlainTable(["check", "detail"], [["no_in_band_error", "boom\nINFO:     127.0.0.1:1 - \"GET /\" 200\r\n"
                                              "token_count  ok\u2028x"], ["next", "fine"]])
    assert table.rows[0][1] == 'boom \u23ce INFO:     127.0.0.1:1 - "GET /" 200 \u23ce token_count  ok \u23ce x'
    assert all("\n" not in cell for row in table.rows for cell in row)
