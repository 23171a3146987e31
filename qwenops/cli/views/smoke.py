"""How `qwenops smoke-stream` looks in a terminal: the live view while streaming, the summary after.

Kept apart from `qwenops.smoke.run` so the core never imports rich and never prints. The report's
`base_url` already has any credentials masked.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from qwenops.smoke.run import SmokeOptions, SmokeReport, run_smoke
from qwenops.stream.chunks import ChatDelta

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def smoke_summary(report: SmokeReport) -> RenderableType:
    """The summary: verdict line, one row per check, one row per metric."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    verdict = "[bold green]PASS[/]" if report.ok else "[bold red]FAIL[/]"
    head = (
        f"smoke-stream {verdict}: {report.streams_ok}/{report.requests} streams ok, "
        f"{report.model} at {report.base_url} (concurrency {report.concurrency})"
    )
    # What the user asked and what came back, so a pass is seen to be a sensible answer, not just a shape.
    exchange = Text.assemble(("prompt  ", "bold"), report.prompt)
    if report.streams and report.streams[0].text:
        answer = " ".join(report.streams[0].text.split())
        exchange.append_text(Text.assemble(("\nanswer  ", "bold"), answer[:400] + ("…" if len(answer) > 400 else "")))
    checks = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
    checks.add_column("check")
    checks.add_column("result")
    checks.add_column("detail", overflow="fold")
    for check in report.checks:
        result = "[yellow]skip[/]" if check.skipped else "[green]ok[/]" if check.ok else "[red]FAIL[/]"
        checks.add_row(check.name, result, check.detail)

    metrics = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
    metrics.add_column("metric (median)")
    metrics.add_column("value", justify="right")
    metrics.add_column("how", style="dim")
    metrics.add_row("ttft", _seconds(report.ttft_s), "send → first content")
    metrics.add_row("first chunk", _seconds(report.first_chunk_s), "send → first chunk")
    if report.first_reasoning_s is not None:
        metrics.add_row("first reasoning", _seconds(report.first_reasoning_s), "send → first reasoning")
    itl = report.itl_s
    itl_text = f"{_seconds(itl.p50)} / {_seconds(itl.p90)} / {_seconds(itl.p99)}"
    metrics.add_row("itl p50/p90/p99", itl_text, "gaps between token chunks")
    metrics.add_row("tpot", _seconds(report.tpot_s), "(e2e - first token) / (tokens - 1)")
    metrics.add_row("e2e", _seconds(report.e2e_s), "send → last token")
    metrics.add_row("output tokens", str(report.output_tokens), "usage, all streams")
    rate = "-" if report.output_tokens_per_s is None else f"{report.output_tokens_per_s:.1f}/s"
    metrics.add_row("output rate", rate, f"tokens / wall time ({report.wall_s:.2f} s)")
    if not report.resume:
        return Group(head, exchange, "", checks, "", metrics)
    return Group(head, exchange, "", checks, "", metrics, "", resumption(report))


def resumption(report: SmokeReport) -> RenderableType:
    """With --resume: one row per place a stream was continued (after tokens, gap, attempt) and per stream
    that failed unresumed (why); streams never cut are counted in one line."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
    table.add_column("resumed stream")
    table.add_column("after tokens", justify="right")
    table.add_column("gap", justify="right")
    table.add_column("attempt", justify="right")
    table.add_column("detail", overflow="fold")
    uncut = 0
    for stream in report.streams:
        for resumed in stream.resumed:
            table.add_row(str(stream.index), str(resumed.after_tokens), _seconds(resumed.gap_ms / 1000),
                          str(resumed.attempt), "cut, then continued from its token ids")
        if stream.not_resumed is not None:
            table.add_row(str(stream.index), "-", "-", "-", f"[red]not resumed:[/] {escape(stream.not_resumed)}")
        elif not stream.resumed:
            uncut += 1
    line = f"resume: {report.streams_resumed}/{report.requests} streams resumed, {uncut} not cut"
    return Group(line, table) if table.row_count else line


class LiveSmokeView:
    """A rich Live panel on stderr: each running stream's latest text and the run's counters."""

    def __init__(self, total: int, console: Console) -> None:
        self.total = total
        self.console = console
        self.texts: dict[int, str] = {}
        self.finished = 0
        self.failed = 0
        self.tokens = 0
        self.started = time.perf_counter()
        self._live: Live | None = None

    def __enter__(self) -> LiveSmokeView:
        from rich.live import Live

        self._live = Live(
            console=self.console, transient=True, refresh_per_second=12, get_renderable=self._render
        )
        self._live.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.__exit__(kind, exc, tb)

    def stream_started(self, index: int) -> None:
        self.texts[index] = ""

    def stream_delta(self, index: int, delta: ChatDelta) -> None:
        self.texts[index] = self.texts.get(index, "") + (delta.content or delta.reasoning_content)
        self.tokens += delta.tokens

    def stream_ended(self, index: int, ok: bool) -> None:
        self.texts.pop(index, None)
        self.finished += 1
        self.failed += not ok

    def _render(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        from qwenops.cli.output import safe_renderable

        elapsed = time.perf_counter() - self.started
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column(style="dim", no_wrap=True)
        table.add_column(no_wrap=True, overflow="ellipsis")
        for index, text in sorted(self.texts.items())[:8]:
            tail = " ".join(text.split())[-100:]
            table.add_row(f"stream {index}", Text(tail or "…"))  # the server's text: never markup
        rate = self.tokens / elapsed if elapsed > 0 else 0.0
        table.add_row(
            "",
            f"[bold]{self.finished}/{self.total}[/] done, {self.failed} failed, "
            f"{self.tokens} tokens, {rate:.1f} tokens/s, {elapsed:.1f} s",
        )
        return safe_renderable(table)  # Live draws it itself, not through print


def run_smoke_in_terminal(options: SmokeOptions, *, live: bool, junit_path: Path | None) -> SmokeReport:
    """`run_smoke`, with the live view on stderr when `live` (a terminal, and no --json)."""
    if not live:
        return run_smoke(options, junit_path=junit_path)
    from qwenops.cli.output import stderr_console

    with LiveSmokeView(options.requests, stderr_console()) as view:
        return run_smoke(options, observer=view, junit_path=junit_path)
