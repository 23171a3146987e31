"""`qwenops tune` end to end: options -> profile, workload, planned candidates -> sweep -> pick -> saved profile.

Everything that can be refused is refused before the first server starts: the options, the profile, the
workload file, a missing engine and a taken port.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from qwenops.tune.candidates import default_grid, initial_order, plan_candidate, plan_context
from qwenops.tune.goodput import RequestSample
from qwenops.tune.launch import CANDIDATE_INDEPENDENT, ServedCandidate, candidate_plan
from qwenops.tune.options import TuneOptions
from qwenops.tune.results import Candidate, CandidateResult, TuneResult
from qwenops.tune.sweep import Launch, Measure, SweepObserver, SweepSettings, sweep
from qwenops.tune.workload import Workload, workload_from

if TYPE_CHECKING:
    from qwenops.config.settings import Settings
    from qwenops.config.target import ConfiguredServer
    from qwenops.serve.run import ServePlan

DEFAULT_PROMPT_TOKENS = 256


def run_tune(options: TuneOptions, *, observer: SweepObserver | None = None, launch: Launch | None = None,
             measure: Measure | None = None, clock: Callable[[], float] = time.monotonic,
             now: Callable[[], datetime.datetime] | None = None) -> TuneResult:
    from qwenops.config.loader import resolve_profile
    from qwenops.config.settings import load_settings

    settings = load_settings()
    overrides = {"port": str(options.port)} if options.port is not None else {}
    profile = resolve_profile(options.profile, cli_overrides=overrides).profile
    workload = workload_from(options.prompt_tokens, options.output_tokens, options.workload_file,
                             (DEFAULT_PROMPT_TOKENS, profile.client.max_tokens))
    # Before planning: cpu-tiny's model is built on first use, and the planner reads its config.json.
    plan = _serve_plan(options)
    if not options.plan_only:
        preflight(plan)
    from qwenops.serve.run import ensure_model

    ensure_model(plan)
    context = plan_context(profile, settings.state_dir, options.probe_file)
    config = context.model.config if context.model is not None else None
    grid = default_grid(profile, workload, config, max_num_seqs=options.max_num_seqs,
                        max_num_batched_tokens=options.max_num_batched_tokens, max_model_len=options.max_model_len)
    planned = [plan_candidate(c, context, workload) for c in grid.candidates()]
    reference = Candidate(max_num_seqs=profile.max_num_seqs or grid.max_num_seqs[len(grid.max_num_seqs) // 2],
                          max_num_batched_tokens=profile.max_num_batched_tokens or grid.max_num_batched_tokens[0],
                          max_model_len=profile.max_model_len or grid.max_model_len[-1])
    ordered = initial_order([p for p in planned if p.fits], reference)
    pruned = [CandidateResult(candidate=p.candidate, status="pruned", detail=p.reason, planned=p)
              for p in planned if not p.fits]
    common = {"profile": profile.name, "engine": profile.engine, "slo": options.slo,
              "workload": workload.describe(), "budget_s": options.budget_s, "notes": context.notes}
    if options.plan_only:
        rows = [CandidateResult(candidate=p.candidate, status="planned", detail=p.reason, planned=p) for p in ordered]
        return TuneResult(**common, plan_only=True, elapsed_s=0.0, server_starts=0, stopped_by="plan only",
                          candidates=(*rows, *pruned), chosen=None, chosen_goodput_rps=None, saved_profile=None,
                          saved_profile_name=None)
    if launch is None:
        launch = _launcher(options, overrides, settings)
    if measure is None:
        measure = _measurer(time.monotonic() + options.budget_s)
    outcome = sweep(ordered, workload, SweepSettings(slo=options.slo, budget_s=options.budget_s,
                                                     max_concurrency=options.max_concurrency,
                                                     requests_per_level=options.requests_per_level,
                                                     independent_causes=CANDIDATE_INDEPENDENT),
                    launch=launch, measure=measure, clock=clock, observer=observer)
    results = [*outcome.results, *pruned]
    from qwenops.tune.goodput import pick

    chosen = pick(outcome.results)
    saved_name = saved_path = None
    if chosen is not None:
        from qwenops.tune.saving import save_tuned_profile

        stamp = (now or (lambda: datetime.datetime.now(datetime.timezone.utc)))()
        saved_name, path = save_tuned_profile(settings.state_dir, profile.name, chosen, slo=options.slo,
                                              workload=workload.describe(), stamp=stamp,
                                              counts=_counts(results))
        saved_path = str(path)
    return TuneResult(**common, plan_only=False, elapsed_s=round(outcome.elapsed_s, 1),
                      server_starts=outcome.server_starts, stopped_by=outcome.stopped_by,
                      candidates=tuple(results), chosen=chosen.candidate if chosen else None,
                      chosen_goodput_rps=chosen.goodput_rps if chosen else None, saved_profile=saved_path,
                      saved_profile_name=saved_name)


def _counts(results: list[CandidateResult]) -> str:
    by: dict[str, int] = {}
    for r in results:
        by[r.status] = by.get(r.status, 0) + 1
    parts = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in sorted(by.items()))
    return f"{len(results)} candidates ({parts})"


def _serve_plan(options: TuneOptions) -> ServePlan:
    from qwenops.serve.run import plan_serve

    return plan_serve(options.profile, overrides={"port": str(options.port)} if options.port is not None else {})


def preflight(plan: ServePlan) -> None:
    """What would stop every start, checked once before the first: the engine and the port."""
    from qwenops.hardware.host import check_port_free
    from qwenops.serve.run import check_engine

    check_engine(plan)
    check_port_free(plan.host, plan.port)


def _launcher(options: TuneOptions, overrides: dict[str, str], settings: Settings) -> Launch:
    log_dir = settings.state_dir / "logs"

    def launch(candidate: Candidate, startup_timeout_s: float, on_phase: Callable[[str], object]) -> ServedCandidate:
        plan = candidate_plan(options.profile, candidate, overrides=overrides, log_dir=log_dir,
                              startup_timeout_s=startup_timeout_s)
        return ServedCandidate(plan, on_phase=on_phase, settings=settings)

    return launch


def _measurer(ends_at: float) -> Measure:
    """The load goes to the candidate's server, with the key it was started with (launch.started_server). No
    request outlives the budget (ENDS_AT, time.monotonic), and each waits for the next token at most the
    profile's client timeout (120 s at most): a server that stopped answering held a level for its requests
    times 120 s, whatever --budget-min said (audit 5)."""
    from qwenops.stream.client import Timeouts
    from qwenops.tune.measure import run_level

    def measure(server: ConfiguredServer, workload: Workload, concurrency: int, count: int) -> Sequence[RequestSample]:
        read_s = min(120.0, server.profile.client.timeout_s)
        left = max(ends_at - time.monotonic(), 1.0)
        return run_level(server, workload.requests, concurrency=concurrency, count=count,
                         timeouts=Timeouts(connect_s=min(10.0, read_s), read_s=read_s, total_s=left))

    return measure
