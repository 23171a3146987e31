"""`troubleshoot`: what was read, then each finding with its evidence and fix, then the verdict."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import RenderableType

    from qwenops.troubleshoot.run import TroubleshootReport

_MARK = {"error": "ERROR", "warning": "WARN", "info": "note"}


def troubleshoot_view(report: TroubleshootReport) -> RenderableType:
    from rich.console import Group
    from rich.markup import escape

    read = "; ".join(s.name + (f" ({s.lines:,} line{'' if s.lines == 1 else 's'})" if s.lines is not None else "")
                     for s in report.sources)
    parts: list[RenderableType] = [escape(f"troubleshoot: read {read}")]
    for finding in report.findings:
        seen = f" (seen {finding.count} times)" if finding.count > 1 else ""
        parts.append(escape(f"\n{_MARK[finding.severity]:5}  {finding.category}: {finding.title}{seen}"))
        parts += [escape(f"       {e.source}: {e.quote}") for e in finding.evidence]
        parts.append(escape(f"       fix: {finding.fix}"))
    errors = sum(f.severity == "error" for f in report.findings)
    verdict = "no error found" if report.ok else f"{errors} error finding{'s' if errors > 1 else ''}"
    parts.append(escape(f"\n{verdict}; {len(report.findings)} finding{'s' if len(report.findings) != 1 else ''} "
                        f"in all"))
    return Group(*parts)
