"""Typed results and the versioned JSON envelope every `--json` command prints.

Envelope (ARCHITECTURE.md, pinned by tests/unit/test_contract.py):
    {"qwenops": SCHEMA_VERSION, "command": str, "ok": bool, "data": {...}, "errors": [...]}
Bump SCHEMA_VERSION only for incompatible changes to the envelope or to a command's documented keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from qwenops.errors import ExitCode, QwenopsError

SCHEMA_VERSION = "1"


class ErrorInfo(BaseModel):
    """One error as it appears in the envelope's `errors` list."""

    model_config = ConfigDict(frozen=True)

    code: str
    message: str
    field: str | None = None
    hint: str | None = None

    @classmethod
    def from_exception(cls, exc: QwenopsError) -> ErrorInfo:
        return cls(code=exc.code, message=exc.message, field=exc.field, hint=exc.hint)


class CommandResult(BaseModel):
    """What a command hands to the renderer: its data, whether it passed, and why not."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

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
            "errors": [e.model_dump(mode="json") for e in self.errors],
        }


def to_jsonable(data: Any) -> Any:
    """Turn a result's data (pydantic models, mappings, sequences, scalars) into plain JSON values."""
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, Mapping):
        return {str(k): to_jsonable(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [to_jsonable(v) for v in data]
    return data
