"""Typed results and the versioned JSON envelope every `--json` command prints.

Envelope (docs/architecture.md, pinned by tests/unit/test_contract.py):
    {"qwenops": SCHEMA_VERSION, "command": str, "ok": bool, "data": {...}, "errors": [...]}
Bump SCHEMA_VERSION only for incompatible changes to the envelope or to a command's documented keys.

Plain dataclasses, not pydantic: every command module imports this, and `qwenops --help` must not
pay pydantic's import time just to list commands.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from qwenops.errors import ExitCode, QwenopsError

SCHEMA_VERSION = "1"


@dataclasses.dataclass(frozen=True)
class ErrorInfo:
    """One error as it appears in the envelope's `errors` list."""

    code: str
    message: str
    field: str | None = None
    hint: str | None = None

    @classmethod
    def from_exception(cls, exc: QwenopsError) -> ErrorInfo:
        return cls(code=exc.code, message=exc.message, field=exc.field, hint=exc.hint)


@dataclasses.dataclass(frozen=True)
class CommandResult:
    """What a command hands to the renderer: its data, whether it passed, and why not."""

    command: str
    data: Any = None
    ok: bool = True
    errors: tuple[ErrorInfo, ...] = ()
    # A failed result is a failed check unless the command says otherwise (e.g. UNREACHABLE).
    failure_code: ExitCode = ExitCode.CHECK_FAILED

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.ok else self.failure_code

    def envelope(self) -> dict[str, Any]:
        return {
            "qwenops": SCHEMA_VERSION,
            "command": self.command,
            "ok": self.ok,
            "data": to_jsonable(self.data),
            "errors": [to_jsonable(e) for e in self.errors],
        }


def to_jsonable(data: Any) -> Any:
    """Plain JSON values from pydantic models, dataclasses, mappings, sequences, paths and enums."""
    result: Any = data
    if hasattr(data, "model_dump"):  # a pydantic model; checked by duck type to keep pydantic unimported
        result = data.model_dump(mode="json")
    elif dataclasses.is_dataclass(data) and not isinstance(data, type):
        result = {f.name: to_jsonable(getattr(data, f.name)) for f in dataclasses.fields(data)}
    elif isinstance(data, Mapping):
        result = {str(k): to_jsonable(v) for k, v in data.items()}
    elif isinstance(data, (list, tuple, set, frozenset)):
        result = [to_jsonable(v) for v in data]
    elif isinstance(data, enum.Enum):
        result = data.value
    elif isinstance(data, PurePath):
        result = str(data)
    return result
