"""The sweep: candidates in order, each started, warmed up and measured at rising concurrency, within a
time budget. Launching and measuring are injected, so unit tests drive every rule with fakes and a fake
clock, and the real run (qwenops.tune.run) passes the supervisor and the stream client.

Budget: a candidate is started only when what is left covers what a start and a first level took so far;
a level is started only when what is left covers a prediction of its length; the server's start-up timeout
is what is left. So the run ends within the budget, with the best candidate measured so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from qwenops.tune.candidates import reorder
from qwenops.tune.goodput import (
    RequestSample,
    best_level,
    bound_by,
    concurrency_levels,
    goodput_fell,
    level_result,
    pick,
)
from qwenops.tune.options import Slo
from qwenops.tune.results import Candidate, CandidateResult, FailureCause, LevelResult, PlannedCandidate
from qwenops.tune.workload import Workload

if TYPE_CHECKING:
    from qwenops.config.target import ConfiguredServer

STOP_RESERVE_S = 15.0  # kept back from the budget for stopping the last server (drain, kill, reap)


class Session(Protocol):
    """A started candidate (qwenops.tune.launch.ServedCandidate)."""

    @property
    def server(self) -> ConfiguredServer:
        """Its server and the key it was started with (qwenops.tune.launch.started_server)."""
        ...

    def wait_ready(self) -> FailureCause | None: ...

    def alive(self) -> bool: ...

    def preemptions(self) -> float | None: ...

    def close(self) -> FailureCause | None: ...


# launch(candidate, startup_timeout_s, on_phase) -> Session
Launch = Callable[[Candidate, float, Callable[[str], object]], Session]
# measure(the session's server, workload, concurrency, count) -> one sample per request
Measure = Callable[["ConfiguredServer", Workload, int, int], Sequence[RequestSample]]


class SweepObserver(Protocol):
    def on_phase(self, candidate: Candidate, phase: str, best: CandidateResult | None, left_s: float) -> None: ...

    def on_result(self, result: CandidateResult, best: CandidateResult | None, left_s: float) -> None: ...


class NullSweepObserver:
    def on_phase(self, candidate: Candidate, phase: str, best: CandidateResult | None, left_s: float) -> None:
        pass

    def on_result(self, result: CandidateResult, best: CandidateResult | None, left_s: float) -> None:
        pass


@dataclass(frozen=True)
class SweepSettings:
    slo: Slo
    budget_s: float
    max_concurrency: int
    requests_per_level: int
    independent_causes: frozenset[str] = frozenset()


@dataclass
class SweepOutcome:
    results: list[CandidateResult]
    server_starts: int
    stopped_by: str
    elapsed_s: float
    start_s: list[float] = field(default_factory=list)


def level_count(requests_per_level: int, concurrency: int) -> int:
    """Requests at one level: at least the asked number, and two per stream so every stream is measured
    after its first answer too."""
    return max(requests_per_level, 2 * concurrency)


def sweep(ordered: Sequence[PlannedCandidate], workload: Workload, settings: SweepSettings, *, launch: Launch,
          measure: Measure, clock: Callable[[], float] = time.monotonic,
          observer: SweepObserver | None = None) -> SweepOutcome:
    observer = observer or NullSweepObserver()
    began = clock()
    deadline = began + settings.budget_s - min(STOP_RESERVE_S, 0.1 * settings.budget_s)
    results: list[CandidateResult] = []
    remaining = list(ordered)
    starts = 0
    start_costs: list[float] = []  # seconds from launch to the end of the first level, per candidate
    stopped_by = "grid done"
    best: CandidateResult | None = None
    while remaining:
        planned = remaining.pop(0)
        left = deadline - clock()
        need = max(start_costs) if start_costs else 0.0
        if left <= 0 or left < need:
            why = (f"budget: {max(left, 0):.0f} s left, a start and a first level took up to {need:.0f} s"
                   if need else "budget: no time left")
            results += [_not_run(p, why) for p in (planned, *remaining)]
            stopped_by = "budget"
            break
        run = _Run(planned, workload, settings=settings, launch=launch, measure=measure, clock=clock,
                   observer=observer, deadline=deadline, best=best)
        result = run.execute()
        starts += 1
        if run.first_level_at is not None:
            start_costs.append(run.first_level_at - run.launched_at)
        results.append(result)
        best_result = pick(results)
        best = best_result
        observer.on_result(result, best, deadline - clock())
        if result.status == "failed" and result.cause and result.cause.category in settings.independent_causes:
            why = f"not started: {result.cause.category} would stop every candidate ({result.cause.title})"
            results += [_not_run(p, why) for p in remaining]
            stopped_by = f"{result.cause.category}: {result.cause.title}"
            break
        if run.budget_cut:
            results += [_not_run(p, "budget: the time ran out during the previous candidate") for p in remaining]
            stopped_by = "budget"
            break
        remaining = reorder(remaining, best)
    return SweepOutcome(results, starts, stopped_by, clock() - began)


def _not_run(planned: PlannedCandidate, why: str) -> CandidateResult:
    return CandidateResult(candidate=planned.candidate, status="not_run", detail=why, planned=planned)


class _Run:
    """One candidate: start, warm up, levels until goodput falls (or the levels or the budget end), stop."""

    def __init__(self, planned: PlannedCandidate, workload: Workload, *, settings: SweepSettings, launch: Launch,
                 measure: Measure, clock: Callable[[], float], observer: SweepObserver, deadline: float,
                 best: CandidateResult | None) -> None:
        self.planned, self.workload, self.settings = planned, workload, settings
        self.launch, self.measure, self.clock, self.observer = launch, measure, clock, observer
        self.deadline, self.best = deadline, best
        self.candidate = planned.candidate
        self.launched_at = clock()
        self.first_level_at: float | None = None
        self.budget_cut = False
        self.levels: list[LevelResult] = []
        self.preemptions_before: float | None = None

    def phase(self, text: str) -> None:
        self.observer.on_phase(self.candidate, text, self.best, self.deadline - self.clock())

    def execute(self) -> CandidateResult:
        self.phase("starting")
        session = self.launch(self.candidate, max(self.deadline - self.clock(), 1.0), self.phase)
        cause: FailureCause | None = None
        ready_after: float | None = None
        before = after = None
        try:
            cause = session.wait_ready()
            if cause is None:
                ready_after = round(self.clock() - self.launched_at, 2)
                cause = self._measure(session)
                if cause is None:
                    before = self.preemptions_before
                    after = session.preemptions()
        finally:
            self.phase("stopping")
            died = session.close()
        cause = cause or died
        timed_out = cause is None or "startup_timeout_s" in cause.line
        if ready_after is None and self.clock() >= self.deadline and timed_out:
            # The start-up timeout was what was left of the budget: not this candidate's failure.
            self.budget_cut = True
            return CandidateResult(candidate=self.candidate, status="not_run",
                                   detail="budget: the time ran out while it started", planned=self.planned)
        if cause is not None:
            return CandidateResult(candidate=self.candidate, status="failed", ready_after_s=ready_after,
                                   detail=f"{cause.category}: {cause.title}", cause=cause,
                                   levels=tuple(self.levels), planned=self.planned)
        # A counter that went backwards (a restart, or a server's lie) measured nothing: unknown, as status says.
        preemptions = (after - before) if before is not None and after is not None and after >= before else None
        return self._measured(ready_after, preemptions)

    def _measure(self, session: Session) -> FailureCause | None:
        self.phase("warming up")
        warm = self.measure(session.server, self.workload, 1, 1)
        if any(s.error for s in warm):
            return self._died(session) or FailureCause(
                category="warmup_failed", title="the warm-up request failed", line=warm[0].error or "",
                fix="read the candidate's log in the state dir (logs/tune-*.log)")
        self.preemptions_before = session.preemptions()
        for concurrency in concurrency_levels(self.settings.max_concurrency, self.candidate.max_num_seqs):
            count = level_count(self.settings.requests_per_level, concurrency)
            if self.levels and self.clock() + self._predict(count) > self.deadline:
                self.budget_cut = True
                break
            self.phase(f"measuring at concurrency {concurrency} ({count} requests)")
            samples = self.measure(session.server, self.workload, concurrency, count)
            if self.first_level_at is None:
                self.first_level_at = self.clock()
            level = level_result(concurrency, samples, self.settings.slo)
            if level.errors and not session.alive():
                self.levels.append(level)
                return self._died(session)
            self.levels.append(level)
            if goodput_fell(self.levels):
                break
        return None

    def _predict(self, count: int) -> float:
        last = self.levels[-1]
        return last.wall_s * count / max(last.requests, 1)

    def _died(self, session: Session) -> FailureCause | None:
        if session.alive():
            return None
        return session.close() or FailureCause(category="engine_dead", title="the server died while measured",
                                               line="", fix="read the candidate's log")

    def _measured(self, ready_after: float | None, preemptions: float | None) -> CandidateResult:
        top = best_level(self.levels)
        bound = bound_by(self.levels, self.candidate, max_concurrency=self.settings.max_concurrency,
                         preemptions=preemptions, budget_cut=self.budget_cut)
        if top is None:
            return CandidateResult(candidate=self.candidate, status="not_run", detail="budget: no level measured",
                                   ready_after_s=ready_after, planned=self.planned)
        how = (f"{len(self.levels)} level(s) up to concurrency {self.levels[-1].concurrency}; "
               f"{top.good}/{top.requests} requests met the SLO at concurrency {top.concurrency}")
        return CandidateResult(
            candidate=self.candidate, status="measured", detail=how, goodput_rps=top.goodput_rps,
            best_concurrency=top.concurrency, ttft_p50_ms=top.ttft_p50_ms, ttft_p99_ms=top.ttft_p99_ms,
            tpot_p50_ms=top.tpot_p50_ms, tpot_p99_ms=top.tpot_p99_ms, output_tokens_per_s=top.output_tokens_per_s,
            preemptions=preemptions, bound=bound, ready_after_s=ready_after, levels=tuple(self.levels),
            planned=self.planned)
