"""Typed results of a tuning run: what each candidate was, what became of it, and the pick."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from qwenops.tune.options import Slo

Status = Literal["measured", "failed", "pruned", "not_run", "planned"]


class Candidate(BaseModel):
    """One launch configuration: the three values tune varies (profile fields, named like vLLM flags)."""

    model_config = ConfigDict(frozen=True)

    max_num_seqs: int
    max_num_batched_tokens: int
    max_model_len: int

    @property
    def key(self) -> str:
        return f"seqs={self.max_num_seqs} batched={self.max_num_batched_tokens} len={self.max_model_len}"

    @property
    def slug(self) -> str:
        return f"s{self.max_num_seqs}-b{self.max_num_batched_tokens}-l{self.max_model_len}"

    def values(self) -> dict[str, int]:
        return {"max_num_seqs": self.max_num_seqs, "max_num_batched_tokens": self.max_num_batched_tokens,
                "max_model_len": self.max_model_len}


class PlannedCandidate(BaseModel):
    """A candidate as the planner sees it, before anything starts."""

    model_config = ConfigDict(frozen=True)

    candidate: Candidate
    fits: bool
    reason: str  # why it is pruned, or what the planner predicts
    kv_tokens: int | None = None
    predicted_concurrency: float | None = None  # requests of the workload's longest size the KV cache holds


class LevelResult(BaseModel):
    """The workload at one concurrency: how many requests met the SLO per second (goodput)."""

    model_config = ConfigDict(frozen=True)

    concurrency: int
    requests: int
    completed: int
    good: int
    errors: int
    wall_s: float
    goodput_rps: float
    throughput_rps: float
    ttft_misses: int
    tpot_misses: int
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    tpot_p50_ms: float | None
    tpot_p99_ms: float | None
    output_tokens_per_s: float
    prompt_tokens_mean: float | None
    first_error: str | None = None


class FailureCause(BaseModel):
    model_config = ConfigDict(frozen=True)

    category: str
    title: str
    line: str
    fix: str


class CandidateResult(BaseModel):
    """What became of one candidate; the table of `qwenops tune` has one row per result."""

    model_config = ConfigDict(frozen=True)

    candidate: Candidate
    status: Status
    detail: str  # pruned: the planner's reason; failed: the cause; not_run: why not; measured: how it ended
    goodput_rps: float | None = None
    best_concurrency: int | None = None
    ttft_p50_ms: float | None = None
    ttft_p99_ms: float | None = None
    tpot_p50_ms: float | None = None
    tpot_p99_ms: float | None = None
    output_tokens_per_s: float | None = None
    preemptions: float | None = None
    bound: str | None = None  # the limit that stopped goodput from growing
    ready_after_s: float | None = None
    cause: FailureCause | None = None
    levels: tuple[LevelResult, ...] = ()
    planned: PlannedCandidate | None = None


class TuneResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    profile: str
    engine: str
    slo: Slo
    workload: str
    plan_only: bool
    budget_s: float
    elapsed_s: float
    server_starts: int
    stopped_by: str  # "grid done", "budget", or the cause that would stop every candidate
    candidates: tuple[CandidateResult, ...]  # in the order they were (or would be) run; pruned last
    chosen: Candidate | None
    chosen_goodput_rps: float | None
    saved_profile: str | None
    saved_profile_name: str | None
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.plan_only or self.chosen is not None
