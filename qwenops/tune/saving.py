"""The tuned profile: `NAME-tuned.yaml` beside the state, extending NAME with the chosen values and a
comment that says under which SLO, workload and date they won (the same writer as serve's `-fitted`)."""

from __future__ import annotations

import datetime
from pathlib import Path

from qwenops.config.saved import derived_profile_text, save_derived_profile
from qwenops.tune.options import Slo
from qwenops.tune.results import Candidate, CandidateResult

SUFFIX = "-tuned"


def tuned_name(profile: str) -> tuple[str, str]:
    """(the profile the tuned one extends, the tuned one's name); tuning NAME-tuned again replaces it."""
    base = profile.removesuffix(SUFFIX)
    return base, base + SUFFIX


def tuned_comment(*, name: str, chosen: CandidateResult, slo: Slo, workload: str, stamp: datetime.datetime,
                  counts: str) -> list[str]:
    return [
        f"Tuned by `qwenops tune` at {stamp.isoformat(timespec='seconds')}: the most goodput under the SLO.",
        f"SLO: {slo.describe()} (goodput: requests/s meeting both, as DistServe defines it)",
        f"Workload: {workload}",
        f"Measured: {chosen.goodput_rps or 0.0:.2f} req/s of goodput at concurrency {chosen.best_concurrency}, "
        f"TTFT p99 {_ms(chosen.ttft_p99_ms)}, TPOT p99 {_ms(chosen.tpot_p99_ms)}; {counts}",
        f"Serve it with: qwenops serve -p {name}",
    ]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def tuned_profile_text(profile: str, chosen: CandidateResult, *, slo: Slo, workload: str,
                       stamp: datetime.datetime, counts: str) -> str:
    base, name = tuned_name(profile)
    return derived_profile_text(extends=base, description=_description(base, chosen.candidate),
                                values=chosen.candidate.values(),
                                comment=tuned_comment(name=name, chosen=chosen, slo=slo, workload=workload,
                                                      stamp=stamp, counts=counts))


def save_tuned_profile(state_dir: Path | str, profile: str, chosen: CandidateResult, *, slo: Slo, workload: str,
                       stamp: datetime.datetime, counts: str) -> tuple[str, Path]:
    base, name = tuned_name(profile)
    path = save_derived_profile(state_dir, name, extends=base, description=_description(base, chosen.candidate),
                                values=chosen.candidate.values(),
                                comment=tuned_comment(name=name, chosen=chosen, slo=slo, workload=workload,
                                                      stamp=stamp, counts=counts))
    return name, path


def _description(base: str, candidate: Candidate) -> str:
    return f"{base}, tuned: {candidate.key}"
