"""`profiles list` (one row a profile) and `profiles show` (one row a field, with its source on request)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import RenderableType

    from qwenops.profiles.run import ProfileList, ProfileView


def list_view(data: ProfileList) -> RenderableType:
    from qwenops.cli.views.tables import table

    return table(["profile", "engine", "model", "description"],
                 [(p.name, p.engine, p.model, f"INVALID: {p.problem}" if p.problem else p.description)
                  for p in data.profiles])


def show_view(data: ProfileView, *, with_sources: bool) -> RenderableType:
    from qwenops.cli.views.tables import table

    def cell(value: Any) -> str:
        if isinstance(value, dict):
            return ", ".join(f"{k}={v}" for k, v in value.items()) or "{}"
        if isinstance(value, list):
            return " ".join(map(str, value)) or "[]"
        return "—" if value is None else str(value)

    rows: list[tuple[str, ...]] = [
        (field, cell(value), data.sources.get(field, "")) if with_sources else (field, cell(value))
        for field, value in data.values.items()
    ]
    key_row = ("api_key", data.api_key or "—", "environment" if data.api_key else "")
    rows.append(key_row if with_sources else key_row[:2])
    columns = ["field", "value", "source"] if with_sources else ["field", "value"]
    return table(columns, rows, title=f"profile {data.name}  ({' <- '.join(reversed(data.files))})")
