"""Every decoder of a server's JSON bounds every integer it takes (a token count or id: 0 to 2^31 - 1). Audit 5 found
a 4,300-digit count in chat chunks (exit 4 in smoke, tune and troubleshoot); audit 7 found the same in the resume
path's /v1/completions chunks, whose decoder had plain ints. This walks every wire model, pydantic's and msgspec's,
and fails on an int without the bound."""

from __future__ import annotations

import typing
from typing import Annotated, Any

import msgspec
from pydantic import BaseModel

from qwenops.stream import chunks, resume
from qwenops.untrusted import MAX_WIRE_COUNT


def unbounded(hint: Any, where: str) -> list[str]:
    """The places in HINT where an int has no upper bound of MAX_WIRE_COUNT."""
    if hint is int:
        return [where]
    if typing.get_origin(hint) is Annotated:
        base, *metadata = typing.get_args(hint)
        if base is int:
            # msgspec.Meta(ge=, le=); pydantic's Field(ge=, le=), whose FieldInfo holds annotated_types' Ge and Le
            parts = [*metadata, *(item for meta in metadata for item in getattr(meta, "metadata", []))]
            bounded = any(getattr(part, "le", None) == MAX_WIRE_COUNT for part in parts) and \
                any(getattr(part, "ge", None) == 0 for part in parts)
            return [] if bounded else [where]
        return unbounded(base, where)
    if isinstance(hint, type) and issubclass(hint, BaseModel | msgspec.Struct):
        return []  # walked on its own
    return [place for arg in typing.get_args(hint) for place in unbounded(arg, where)]


def wire_models() -> list[type]:
    found: list[type] = []
    for module in (chunks, resume):
        for name in dir(module):
            value = getattr(module, name)
            if isinstance(value, type) and name.startswith(("_Wire", "_Fast")) and \
                    issubclass(value, BaseModel | msgspec.Struct):
                found.append(value)
    return found


def test_every_wire_integer_is_bounded() -> None:
    models = wire_models()
    assert any(m.__name__ == "_WireCompletionUsage" for m in models) and any(m.__name__ == "_WireUsage" for m in models)
    problems = []
    for model in models:
        hints = typing.get_type_hints(model, vars(chunks) | vars(resume), include_extras=True)
        for field, hint in hints.items():
            if field.startswith("_") or typing.get_origin(hint) is typing.ClassVar:
                continue
            problems += unbounded(hint, f"{model.__module__}.{model.__name__}.{field}")
    assert not problems
