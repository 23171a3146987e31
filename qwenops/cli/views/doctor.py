"""`doctor`: every check as a table row (status, check, finding, fix), then the verdict."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import RenderableType

    from qwenops.doctor.checks import DoctorReport

_MARK = {"pass": "ok", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def doctor_view(report: DoctorReport) -> RenderableType:
    from rich.console import Group
    from rich.markup import escape

    from qwenops.cli.views.tables import table

    rows = [(_MARK[c.status], c.name, escape(c.finding), escape(c.fix or "")) for c in report.checks]
    counts = ", ".join(f"{n} {status}" for status, n in report.counts.items() if n)
    verdict = "ready" if report.ok else "NOT ready"
    title = f"doctor: profile {report.profile} on {report.facts_source} host facts"
    return Group(table(["", "check", "finding", "fix"], rows, title=title), f"{verdict}: {counts}")
