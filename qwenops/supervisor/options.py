"""The supervisor's options: the one type the runner needs from outside (profiles embed it)."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port`, `:port` or `port` (127.0.0.1) -> (host, port); ValueError naming the form."""
    host, sep, port_text = value.rpartition(":")
    if not sep:
        host = ""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"expected host:port with a port from 1 to 65535, got {value[:60]!r}")
    return host or "127.0.0.1", int(port_text)


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
    metrics: str | None = Field(
        None, description="serve qwenops' own Prometheus metrics on this host:port (`9400` or `:9400` is "
                          "127.0.0.1:9400); off when null (docs/monitoring.md)")

    @field_validator("metrics")
    @classmethod
    def _metrics_is_a_listen_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, port = parse_listen(value)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"the host of {value!r} must be an IP address (127.0.0.1 when left out)") from None
        if "%" in host:
            raise ValueError("must be an IP address without a %zone")
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
