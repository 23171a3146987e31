"""`qwenops tune`: the live view of the sweep on stderr, and the result table on stdout.

On a terminal a rich live line shows the candidate, its phase, the best so far and the time left; elsewhere
each candidate's end is one plain line, so logs stay greppable.
"""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.live import Live

    from qwenops.tune.results import Candidate, CandidateResult, TuneResult


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _best(best: CandidateResult | None) -> str:
    if best is None or best.goodput_rps is None:
        return "best: none yet"
    return f"best: {best.candidate.key} {best.goodput_rps:.2f} req/s"


class SweepReporter:
    """The sweep's observer. Calls come from the main thread (the sweep) and the supervisor's thread (phases)."""

    def __init__(self) -> None:
        from qwenops.cli.output import stderr_console

        self.console = stderr_console()
        self._live: Live | None = None
        self._lock = threading.Lock()
        self._tty = sys.stderr.isatty()
        self._candidate: Candidate | None = None
        self._best: CandidateResult | None = None
        self._left_s = 0.0

    def __enter__(self) -> SweepReporter:
        if self._tty:
            from rich.live import Live

            self._live = Live("", console=self.console, transient=True, refresh_per_second=4)
            self._live.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.stop()

    def on_phase(self, candidate: Candidate, phase: str, best: CandidateResult | None, left_s: float) -> None:
        with self._lock:
            self._candidate, self._best, self._left_s = candidate, best, left_s
            if self._live is not None:
                from rich.markup import escape

                from qwenops.cli.output import safe_renderable

                line = self.console.render_str(f"[bold]tune[/] {escape(candidate.key)}: {escape(phase)} | "
                                               f"{escape(_best(best))} | {max(left_s, 0) / 60:.1f} min left")
                self._live.update(safe_renderable(line))  # Live draws it itself, not through print

    def on_result(self, result: CandidateResult, best: CandidateResult | None, left_s: float) -> None:
        with self._lock:
            from rich.markup import escape

            if result.status == "measured":
                what = (f"goodput {_num(result.goodput_rps, 2)} req/s at concurrency {result.best_concurrency}, "
                        f"bound by {result.bound}")
            else:
                what = f"{result.status}: {result.detail}"
            self.console.print(f"[dim]tune[/] {escape(result.candidate.key)}: {escape(what)}; "
                               f"{escape(_best(best))}; {max(left_s, 0) / 60:.1f} min left")


COLUMNS = ("#", "max_num_seqs", "batched", "max_model_len", "status", "goodput req/s", "at conc.",
           "TTFT p50/p99 ms", "TPOT p50/p99 ms", "tok/s", "preempt.", "bound / detail")


def _row(index: int, r: CandidateResult, chosen: Candidate | None) -> list[object]:
    c = r.candidate
    mark = f"{index}*" if chosen is not None and c == chosen else str(index)
    if r.status == "measured":
        detail = r.bound
    elif r.status == "failed" and r.cause is not None:
        detail = f"{r.cause.category}: {r.cause.line or r.cause.title}"
    else:
        detail = r.detail
    return [mark, c.max_num_seqs, c.max_num_batched_tokens, c.max_model_len, r.status.replace("_", " "),
            _num(r.goodput_rps, 2), r.best_concurrency or "-",
            f"{_num(r.ttft_p50_ms)} / {_num(r.ttft_p99_ms)}" if r.status == "measured" else "-",
            f"{_num(r.tpot_p50_ms)} / {_num(r.tpot_p99_ms)}" if r.status == "measured" else "-",
            _num(r.output_tokens_per_s, 0), _num(r.preemptions, 0), detail]


def tune_view(result: TuneResult) -> RenderableType:
    from rich.console import Group

    from qwenops.cli.views.tables import table

    if result.plan_only:
        head = (f"tune --plan-only: profile {result.profile} ({result.engine}); {result.workload}; SLO "
                f"{result.slo.describe()}")
        rows: list[list[object]] = []
        for index, r in enumerate(result.candidates, start=1):
            c, p = r.candidate, r.planned
            rows.append([index, c.max_num_seqs, c.max_num_batched_tokens, c.max_model_len,
                         "run" if r.status == "planned" else "pruned",
                         p.kv_tokens if p is not None and p.kv_tokens is not None else "-",
                         _num(p.predicted_concurrency if p else None, 1), r.detail])
        runs = sum(1 for r in result.candidates if r.status == "planned")
        parts: list[RenderableType] = [
            head,
            table(("#", "max_num_seqs", "batched", "max_model_len", "plan", "KV tokens", "fits at once", "reason"),
                  rows),
            f"{runs} of {len(result.candidates)} candidates would start, in this order; "
            f"{len(result.candidates) - runs} pruned without starting",
        ]
        parts += [f"assumed: {note}" for note in result.notes]
        return Group(*parts)
    head = (f"tune: profile {result.profile}; {result.workload}; SLO {result.slo.describe()}; "
            f"{result.server_starts} server start{'' if result.server_starts == 1 else 's'} in "
            f"{result.elapsed_s / 60:.1f} min "
            f"(budget {result.budget_s / 60:g} min; {result.stopped_by})")
    rows = [_row(i, r, result.chosen) for i, r in enumerate(result.candidates, start=1)]
    parts = [head, table(COLUMNS, rows)]
    if result.chosen is not None:
        parts.append(f"chosen: {result.chosen.key}: {result.chosen_goodput_rps:.2f} req/s of goodput "
                     f"(requests/s meeting both SLOs)")
        parts.append(f"saved: {result.saved_profile} (serve it with: qwenops serve -p {result.saved_profile_name})")
    else:
        parts.append("no candidate served a request within the SLO: nothing saved (loosen the SLO, shorten the "
                     "workload or give a larger --budget-min)")
    return Group(*parts)
