"""install's env file as each of its readers reads it, and edits that set one variable as data.

The readers: systemd's EnvironmentFile= (a port of its parser, before and since systemd 254, which stopped
continuing a comment on a trailing backslash) and qwenops' own (python-dotenv). `assign` replaces the last
assignment and removes the earlier ones, or adds a line, and keeps only an edit after which every reader
reads the new value and every other variable as before; `kept_value` refuses a value the readers disagree
on. The rules: install/run.py's docstring, docs/security.md.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

from qwenops.errors import BadInputError
from qwenops.untrusted import control_character

_WHITESPACE, _NEWLINE, _COMMENTS, _SHELL_NEED_ESCAPE = " \t\n\r", "\n\r", "#;", "\"\\`$"
_ENDS_WITH_A_VALUE = frozenset({"pre_value", "value", "escape", "single", "double", "double_escape"})


@dataclass(frozen=True)
class _Assignment:
    key: str
    value: str
    start: int  # the key's first character
    end: int  # the line end that closes it, or len(text)


def _systemd_assignments(  # noqa: PLR0912, PLR0915 -- one branch per state of systemd's switch, to compare
        text: str, *, before_254: bool = False) -> list[_Assignment]:
    """Every assignment in TEXT, in order, as systemd reads an EnvironmentFile=: a port of
    parse_env_file_internal() (src/basic/env-file.c). Comments are lines that start with # or ;
    (after blanks); \\r ends a line too; quotes and a trailing backslash carry a value across lines.
    BEFORE_254: a comment ending in a backslash also swallows the next line (systemd 253 and older;
    Debian 12 has 252). systemd reads up to the first NUL; install refuses text with one."""
    found: list[_Assignment] = []
    state, start = "pre_key", 0
    key: list[str] = []
    value: list[str] = []
    key_blank: int | None = None  # where the key's trailing blanks start
    value_blank: int | None = None  # where the (unquoted) value's trailing blanks start

    def push(end: int, *, chomp: bool) -> None:
        kept = value[:value_blank] if chomp and value_blank is not None else value
        found.append(_Assignment("".join(key[:key_blank]), "".join(kept), start, end))

    for at, char in enumerate(text):
        if state == "pre_key":
            if char in _COMMENTS:
                state = "comment"
            elif char not in _WHITESPACE:
                state, start, key, key_blank = "key", at, [char], None
        elif state == "key":
            if char in _NEWLINE:
                state = "pre_key"  # a line without '=' is ignored
            elif char == "=":
                state, value, value_blank = "pre_value", [], None
            else:
                if char not in _WHITESPACE:
                    key_blank = None
                elif key_blank is None:
                    key_blank = len(key)
                key.append(char)
        elif state == "pre_value":
            if char in _NEWLINE:
                push(at, chomp=False)
                state = "pre_key"
            elif char == "'":
                state = "single"
            elif char == '"':
                state = "double"
            elif char == "\\":
                state = "escape"
            elif char not in _WHITESPACE:
                state = "value"
                value.append(char)
        elif state == "value":
            if char in _NEWLINE:
                push(at, chomp=True)
                state = "pre_key"
            elif char == "\\":
                state, value_blank = "escape", None
            else:
                if char not in _WHITESPACE:
                    value_blank = None
                elif value_blank is None:
                    value_blank = len(value)
                value.append(char)
        elif state == "escape":
            state = "value"
            if char not in _NEWLINE:  # an escaped line end joins the lines
                value.append(char)
        elif state == "single":
            if char == "'":
                state = "pre_value"
            else:
                value.append(char)
        elif state == "double":
            if char == '"':
                state = "pre_value"
            elif char == "\\":
                state = "double_escape"
            else:
                value.append(char)
        elif state == "double_escape":
            state = "double"
            if char in _SHELL_NEED_ESCAPE:
                value.append(char)
            elif char != "\n":
                value += ["\\", char]
        elif state == "comment":
            if char == "\\":
                state = "comment_escape"
            elif char in _NEWLINE:
                state = "pre_key"
        else:  # comment_escape
            state = "comment" if before_254 or char not in _NEWLINE else "pre_key"
    if state in _ENDS_WITH_A_VALUE:
        push(len(text), chomp=state == "value")
    return found


def systemd_env(text: str, *, before_254: bool = False) -> dict[str, str]:
    """The variables systemd sets from an env file's TEXT: the last assignment of each wins."""
    return {a.key: a.value for a in _systemd_assignments(text, before_254=before_254)}


def _dotenv_env(text: str, *, interpolate: bool) -> dict[str, str]:
    """The variables qwenops (config/settings.py, python-dotenv) reads from TEXT; no value is ''."""
    from dotenv import dotenv_values

    logger = logging.getLogger("dotenv.main")  # it warns of each line it cannot parse: not install's output
    was, logger.disabled = logger.disabled, True
    try:
        values = dotenv_values(stream=io.StringIO(text), interpolate=interpolate)
    finally:
        logger.disabled = was
    return {name: value or "" for name, value in values.items()}


def readings_of(text: str, *, interpolate: bool = True) -> dict[str, dict[str, str]]:
    """TEXT's variables as each reader of the env file sees them: systemd (the server and the gateway,
    old and new) and qwenops' own commands (`QWENOPS_ENV_FILE=… qwenops smoke-stream`)."""
    return {"systemd": systemd_env(text), "systemd before 254": systemd_env(text, before_254=True),
            "qwenops": _dotenv_env(text, interpolate=interpolate)}


def _sets_only(before: dict[str, dict[str, str]], text: str, variable: str, value: str) -> bool:
    """Whether every reader reads VARIABLE as VALUE from TEXT, and every other variable as in BEFORE."""
    for reader, old in readings_of(text, interpolate=False).items():
        new = dict(old)
        if new.pop(variable, None) != value:
            return False
        if new != {name: v for name, v in before[reader].items() if name != variable}:
            return False
    return True


def assign(text: str, variable: str, value: str) -> str | None:
    """TEXT with VARIABLE=VALUE as the assignment every reader reads, as data: systemd's last assignment of
    it replaced and the earlier ones removed, else a line added (after a blank line when a comment ending in
    a backslash would swallow it in systemd 253 and older). None when no edit sets it without changing
    another variable (an open quote swallows whatever follows)."""
    line = f"{variable}={value}"
    candidates = []
    mine = [a for a in _systemd_assignments(text) if a.key == variable]
    if mine:
        pieces, at = [], 0
        for earlier in mine[:-1]:
            pieces.append(text[at:earlier.start])
            at = min(earlier.end + 1, len(text))
        pieces += [text[at:mine[-1].start], line, text[mine[-1].end:] or "\n"]
        candidates.append("".join(pieces))
    separator = "\n" if text and not text.endswith("\n") else ""
    candidates += [f"{text}{separator}{line}\n", f"{text}{separator}\n{line}\n"]
    before = readings_of(text, interpolate=False)
    return next((c for c in candidates if _sets_only(before, c, variable, value)), None)


def kept_value(readings: dict[str, dict[str, str]], variable: str, shown: str) -> str:
    """VARIABLE's value in an existing env file ('' when unset), refused unless every reader reads the same
    one, without a control character: the value install reports is then the one the service gets."""
    values = {reader: env.get(variable, "") for reader, env in readings.items()}
    hint = (f"write it as one line {variable}=VALUE (no quotes, backslashes, $ or export), not after a comment "
            f"ending in a backslash; or delete its lines and install writes a new one")
    if len(set(values.values())) > 1:
        who = "; ".join(f"{reader}: {'one' if v else 'none'}" for reader, v in values.items())
        raise BadInputError(f"{shown} sets {variable} so that its readers disagree on its value ({who}; never "
                            "shown)", field=variable, hint=hint)
    value = next(iter(values.values()))
    what = control_character(value)
    if what is not None:
        raise BadInputError(f"{shown} sets a {variable} that holds {what}", field=variable, hint=hint)
    return value
