"""What troubleshoot finds in a log's text by both of its readers, which must agree: every line
(`read_log`), and the block scanner the CLI uses on large logs (`scan_log`, which builds only the lines
that may matter). Shared by the vllmlog unit tests."""

from __future__ import annotations

import io

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
