"""JSON that the user hands qwenops (a probe file, a config.json, a safetensors index or header).

Read once, bounded: at most `cap` bytes are read (never trusting a size from stat, which /dev/zero
or a FIFO would not give honestly) and nesting deeper than `MAX_DEPTH` is refused, so a runaway or
hostile file is one bad-input line naming its field, not gigabytes of memory or a RecursionError.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qwenops.errors import BadInputError
from qwenops.units import MIB

# Real files nest a handful of levels (a probe: facts -> gpu -> devices -> device -> processes -> process).
MAX_DEPTH = 64


def size_text(cap: int) -> str:
    return f"{cap / MIB:g} MiB" if cap >= MIB else f"{cap:,} bytes"


def read_json(path: Path, *, field: str, cap: int, what: str, hint: str | None = None) -> Any:
    """The JSON value in PATH, described to the user as WHAT ("a probe file"); every failure is a
    BadInputError naming FIELD, with HINT as its fix."""
    from qwenops.readfile import NotRegularFile, read_capped

    try:
        data = read_capped(path, cap)
    except FileNotFoundError:
        raise BadInputError(f"{path} does not exist", field=field, hint=hint) from None
    except NotRegularFile as exc:
        raise BadInputError(f"{path} {exc.instead_of(what)}",
                            field=field, hint=hint) from None
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror or exc}", field=field, hint=hint) from None
    if len(data) > cap:
        raise BadInputError(f"{path} is larger than {size_text(cap)}, the most qwenops reads from {what}",
                            field=field, hint=hint)
    return parse_json(data, origin=str(path), field=field, hint=hint)


def parse_json(data: bytes, *, origin: str, field: str, hint: str | None = None) -> Any:
    """Decode UTF-8 JSON bytes from ORIGIN; bad bytes, bad JSON or too deep nesting name FIELD."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{origin} is not UTF-8 text (byte {exc.start}); is it the right file?",
                            field=field, hint=hint) from None
    try:
        value = json.loads(text)
    except RecursionError:  # the C decoder gives up near the interpreter's recursion limit
        value = None
        too_deep = True
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{origin} is not valid JSON (line {exc.lineno}: {exc.msg})",
                            field=field, hint=hint) from None
    except ValueError:  # Python's own bound on an integer's digits (4,300), not a JSONDecodeError
        raise BadInputError(f"{origin} holds an integer of more than 4,300 digits", field=field, hint=hint) from None
    else:
        too_deep = _deeper_than(value, MAX_DEPTH)
    if too_deep:
        raise BadInputError(f"{origin} nests JSON more than {MAX_DEPTH} levels deep", field=field, hint=hint)
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    # Iterative: checking depth must not itself recurse.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
