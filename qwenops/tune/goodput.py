"""Goodput, as DistServe defines it and `vllm bench serve --goodput` computes it: completed requests per
second whose TTFT and TPOT both meet the SLO. Pure arithmetic on measured requests: no clock, no I/O.

    good        = requests that completed with ttft_s <= SLO_ttft and tpot_s <= SLO_tpot
                  (tpot_s is None for a one-token answer: nothing to miss)
    goodput_rps = good / wall_s           wall_s = last answer's end - first request's send
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qwenops.stream.metrics import percentile
from qwenops.tune.options import Slo
from qwenops.tune.results import Candidate, CandidateResult, LevelResult


@dataclass(frozen=True)
class RequestSample:
    """One request of the workload as the client saw it (seconds on one monotonic clock)."""

    sent_s: float
    ended_s: float
    ttft_s: float | None
    tpot_s: float | None
    output_tokens: int
    prompt_tokens: int | None = None
    error: str | None = None  # the typed stream error's one line; None when it completed


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000.0, 3)


def level_result(concurrency: int, samples: Sequence[RequestSample], slo: Slo) -> LevelResult:
    completed = [s for s in samples if s.error is None]
    ttft_misses = sum(1 for s in completed if s.ttft_s is None or s.ttft_s * 1000.0 > slo.ttft_ms)
    tpot_misses = sum(1 for s in completed if s.tpot_s is not None and s.tpot_s * 1000.0 > slo.tpot_ms)
    good = sum(1 for s in completed if meets(s, slo))
    wall = (max(s.ended_s for s in samples) - min(s.sent_s for s in samples)) if samples else 0.0
    wall = max(wall, 1e-9)
    ttfts = [s.ttft_s for s in completed if s.ttft_s is not None]
    tpots = [s.tpot_s for s in completed if s.tpot_s is not None]
    prompts = [s.prompt_tokens for s in completed if s.prompt_tokens is not None]
    errors = [s.error for s in samples if s.error is not None]
    return LevelResult(
        concurrency=concurrency, requests=len(samples), completed=len(completed), good=good,
        errors=len(errors), wall_s=round(wall, 4), goodput_rps=round(good / wall, 4),
        throughput_rps=round(len(completed) / wall, 4), ttft_misses=ttft_misses, tpot_misses=tpot_misses,
        ttft_p50_ms=_ms(percentile(ttfts, 50)), ttft_p99_ms=_ms(percentile(ttfts, 99)),
        tpot_p50_ms=_ms(percentile(tpots, 50)), tpot_p99_ms=_ms(percentile(tpots, 99)),
        output_tokens_per_s=round(sum(s.output_tokens for s in completed) / wall, 3),
        prompt_tokens_mean=round(sum(prompts) / len(prompts), 1) if prompts else None,
        first_error=errors[0] if errors else None,
    )


def meets(sample: RequestSample, slo: Slo) -> bool:
    if sample.error is not None or sample.ttft_s is None:
        return False
    if sample.ttft_s * 1000.0 > slo.ttft_ms:
        return False
    return sample.tpot_s is None or sample.tpot_s * 1000.0 <= slo.tpot_ms


def concurrency_levels(max_concurrency: int, max_num_seqs: int) -> tuple[int, ...]:
    """1, 2, 4, ... up to the client's cap, and never past twice max_num_seqs (beyond it requests only queue);
    the cap itself is the last level when it is not a power of two."""
    top = max(1, min(max_concurrency, 2 * max_num_seqs))
    levels: list[int] = []
    level = 1
    while level < top:
        levels.append(level)
        level *= 2
    levels.append(top)
    return tuple(levels)


def goodput_fell(levels: Sequence[LevelResult]) -> bool:
    """The stop rule: the last level served fewer good requests per second than the one before it, or none
    at all (more concurrency cannot bring back requests that already miss the SLO one at a time)."""
    if not levels:
        return False
    if levels[-1].good == 0:
        return True
    return len(levels) >= 2 and levels[-1].goodput_rps < levels[-2].goodput_rps


def best_level(levels: Sequence[LevelResult]) -> LevelResult | None:
    """The level with the most goodput; on a tie the lower concurrency (the same goodput with less load)."""
    return max(levels, key=lambda level: (level.goodput_rps, -level.concurrency), default=None)


def bound_by(levels: Sequence[LevelResult], candidate: Candidate, *, max_concurrency: int,
             preemptions: float | None, budget_cut: bool) -> str:
    """The limit that stopped goodput from growing, in the words of the table's `bound` column."""
    if not levels:
        return "budget" if budget_cut else "no level completed"
    last = levels[-1]
    if not goodput_fell(levels):
        if budget_cut:
            return "budget"
        # Every level ran: the highest one was the limit.
        return "max_concurrency" if last.concurrency >= max_concurrency else "max_num_seqs"
    if preemptions is not None and preemptions > 0:
        return "kv_cache (preemptions)"
    return _miss(last, candidate)


def _miss(last: LevelResult, candidate: Candidate) -> str:
    """Why the level where goodput fell fell: errors, queueing past max_num_seqs, or which SLO was missed most."""
    if last.errors:
        return "errors"
    if not (last.ttft_misses or last.tpot_misses):
        return "throughput (server saturated)"
    ttft_worse = last.ttft_misses >= last.tpot_misses
    if ttft_worse and last.concurrency > candidate.max_num_seqs:
        return "max_num_seqs (queueing: ttft)"
    return "ttft_slo" if ttft_worse else "tpot_slo"


def pick(results: Sequence[CandidateResult]) -> CandidateResult | None:
    """The measured candidate with the most goodput; ties go to the lower p99 TTFT, then fewer sequences
    (less memory for the same service)."""
    measured = [r for r in results if r.status == "measured" and r.goodput_rps]
    if not measured:
        return None
    return max(measured, key=lambda r: (r.goodput_rps or 0.0, -(r.ttft_p99_ms or float("inf")),
                                        -r.candidate.max_num_seqs))
