"""The supervisor's options: the one type the runner needs from outside (profiles embed it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SupervisorOptions(BaseModel):
    """How the supervisor runs one server: start-up limit, drain, health probes, backoff, FATAL.

    A profile carries these as its `supervise:` section; the supervisor knows nothing of profiles.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    startup_timeout_s: float = Field(900.0, gt=0, description="longest wait for /health and /v1/models")
    drain_timeout_s: float = Field(30.0, ge=0, description="wait after SIGTERM before SIGKILL of the group")
    health_interval_s: float = Field(5.0, gt=0)
    health_failures: int = Field(3, ge=1, description="failed probes in a row that count as unhealthy")
    backoff_initial_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    max_quick_failures: int = Field(3, ge=1, description="failures within the window before FATAL")
    quick_failure_window_s: float = Field(600.0, gt=0)
    auto_fit: bool = Field(False, description="after a start-up failure with a bounded fix (vLLM's own estimate "
                                              "of max_model_len, free memory, enforce_eager), apply it and start "
                                              "again; at most twice per start")
    stall_timeout_s: float | None = Field(
        120.0, gt=0, description="while requests run or wait, restart when no token comes for this long and "
                                 "a one-token request also stalls (needs /metrics; null turns it off)")
    stall_probe_timeout_s: float = Field(30.0, gt=0, description="how long the one-token confirming request may take")

