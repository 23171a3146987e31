"""What troubleshoot finds in a log's text by both of its readers, which must agree: every line
(`read_log`), and the block scanner the CLI uses on large logs (`scan_log`, which builds only the lines
that may matter). Shared by the vllmlog unit tests."""

from __future__ import annotations

import io
from pathlib import Path

from qwenops.vllmlog.classify import CANDIDATE, SERVED, Finding, LogClassifier
from qwenops.vllmlog.lines import read_log, scan_log


def findings_of_both_readers(text: str) -> list[Finding]:
    """The findings of TEXT, after checking that both readers find the same."""
    every, scanned = LogClassifier(), LogClassifier()
    for line in read_log(io.BytesIO(text.encode())):
        every.feed(line)
    for line in scan_log(io.BytesIO(text.encode()), CANDIDATE, SERVED):
        scanned.feed(line)
    assert scanned.findings() == every.findings()
    return every.findings()


def found(path: Path) -> list[Finding]:
    """What `troubleshoot --log PATH` finds, first to last; both readers agree on the same text."""
    from qwenops.troubleshoot.run import classify_source
    from qwenops.troubleshoot.sources import file_source

    both = findings_of_both_readers(path.read_text(encoding="utf-8"))
    findings, _ = classify_source(file_source(str(path)), {})
    assert [f.category for f in findings] == [f.category for f in both]
    return findings


def categories(path: Path) -> list[str]:
    return [f.category for f in found(path)]


def named(lines: list[str]) -> list[tuple[str, str]]:
    """(category, severity) of each finding in LINES, first to last; both readers agree on them."""
    return [(f.category, f.severity) for f in findings_of_both_readers("\n".join(lines))]
