"""Read vLLM's start-up log as it streams: which phase the server is in, and why it died.

The phases and the rules are the shared classifier's (qwenops.vllmlog.classify), so `serve` and
`troubleshoot` name a failure alike. What is the supervisor's own: evidence counts only until the
server serves (after that the log carries request text anyone with API access controls, and a quoted
"Repository Not Found" must not stop a healthy server or make its next crash FATAL), and engine death
is read from lines anchored on vLLM's logger prefix, so a prompt can never restart the server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from qwenops.vllmlog.classify import Finding, LogClassifier, Phase, quote
from qwenops.vllmlog.lines import MAX_LINE_CHARS, LogLine, normalise

__all__ = ["BootLog", "FatalCause", "Phase", "classify", "strip_prefix"]

# vLLM's own words for "the engine is gone" (v1/utils.py, v1/executor/multiproc_executor.py,
# v1/engine/exceptions.py). The API server lingers for seconds after them answering 503 or erroring
# streams; the supervisor restarts on the first such line instead of waiting for it to exit.
# Anchored at the start of the line, after vLLM's logger prefix (`ERROR 11-25 16:08:41 [file.py:12] `,
# `file.py:12]` before 0.6) and an exception name, because request-log lines quote user prompts
# (vLLM 0.8-0.10 log them by default) and a prompt must never be able to restart the server.
_ENGINE_DEATH = re.compile(
    r"(?:(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) \d\d-\d\d \d\d:\d\d:\d\d \[?[\w./-]+:\d+\] )?"
    r"(?:[\w.]*(?:Error|Exception): )?(?:\[shutdown\] MPClient: )?"
    r"(?:Engine core process \S+ died unexpectedly|Worker proc \S+ died unexpectedly|"
    r"EngineCore encountered an issue|engine core exited unexpectedly|[\w.]*EngineDeadError\b)"
)


@dataclass(frozen=True)
class FatalCause:
    """Why the server cannot start, in the words an operator acts on."""

    category: str  # the failure vocabulary of docs/architecture.md, plus invalid_argument / invalid_config
    title: str
    line: str  # the log line that proves it, stripped of vLLM's process prefix
    fix: str
    retryable: bool  # True when a restart can succeed without a config change
    change: dict[str, object] | None = None  # the bounded fix `serve --auto-fit` may apply

    @classmethod
    def from_finding(cls, finding: Finding) -> FatalCause:
        return cls(finding.category, finding.title, finding.line, finding.fix, finding.retryable, finding.change)

    def message(self) -> str:
        return f"{self.title}: {self.line!r}; fix: {self.fix}"


def strip_prefix(line: str) -> str:
    """Drop vLLM's `(EngineCore pid=123)` process tag so quoted lines read the same from any process. Only the first
    MAX_LINE_CHARS are read, as troubleshoot reads a log (a server's line may be 64 KiB: its cost is bounded too)."""
    return normalise(line[:MAX_LINE_CHARS]).strip()


class BootLog:
    """Feed it the server's lines in order; it tracks the phase and the strongest fatal evidence."""

    def __init__(self) -> None:
        self._classifier = LogClassifier(startup_only=True)
        self._lines = 0
        self.engine_death: str | None = None  # the first line saying the engine process is gone

    @property
    def phase(self) -> Phase:
        return self._classifier.phase

    @property
    def serving(self) -> bool:
        """Set by the runner once the server answered its readiness probe, or by the first line about
        a request; from then on only engine death is read from the log."""
        return self._classifier.serving

    @serving.setter
    def serving(self, value: bool) -> None:
        self._classifier.serving = value

    def feed(self, raw_line: str) -> Phase | None:
        """Take one line; return the new phase when it moved forward, else None."""
        self._lines += 1
        line = LogLine(self._lines, strip_prefix(raw_line))
        if self.engine_death is None and _ENGINE_DEATH.match(line.text):
            self.engine_death = quote(line.text)
        return self._classifier.feed(line)

    @property
    def unservable(self) -> FatalCause | None:
        """The server runs, but cannot serve chat (the model was loaded for another task)."""
        found = next((f for f in self._classifier.findings() if f.category == "model_not_generative"), None)
        return FatalCause.from_finding(found) if found else None

    @property
    def cause(self) -> FatalCause | None:
        root = self._classifier.root_cause()
        return FatalCause.from_finding(root) if root else None


def classify(lines: Iterable[str]) -> FatalCause | None:
    """The fatal cause a whole log shows, or None for a log without one."""
    boot = BootLog()
    for line in lines:
        boot.feed(line)
    return boot.cause
