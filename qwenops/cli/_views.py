"""Text views shared by several commands (each view: data -> something rich prints)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table

    from qwenops.serve import ServePlan, ServeResult


def table(columns: Sequence[str], rows: Iterable[Sequence[object]], *, title: str | None = None) -> Table:
    from rich import box
    from rich.table import Table

    out = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for column in columns:
        out.add_column(column, overflow="fold")
    for row in rows:
        out.add_row(*("" if cell is None else str(cell) for cell in row))
    return out


def serve_plan_view(plan: ServePlan) -> str:
    """`serve --dry-run`: the environment additions, then the command, shell-quoted."""
    import shlex

    lines = [f"# profile {plan.profile}: {plan.base_url} serving {plan.served_model_name!r}; log {plan.log_file}"]
    if plan.builds_tiny_model:
        lines.append(f"# first builds the tiny model into {plan.model_path}")
    lines += [f"{key}={shlex.quote(value)} \\" for key, value in plan.env.items()]
    lines.append(shlex.join(plan.argv))
    return "\n".join(lines)


def serve_result_view(result: ServeResult) -> str:
    if result.ok:
        return f"{result.state}: {result.reason} ({result.restarts} restarts)"
    text = f"{result.state}: {result.reason}"
    if result.cause is not None:
        text = (f"{result.state}: {result.cause.category}: {result.cause.title}\n  log: {result.cause.line}\n"
                f"  fix: {result.cause.fix}")
    return f"{text}\n  full log: {result.log_file}"
