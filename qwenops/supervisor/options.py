"""The supervisor's options: the one type the runner needs from outside (profiles embed it).

A frozen dataclass on qwenops.plainschema, as the profile and the planner's classes are: options whose every value
already has its field's exact type and bounds are accepted without pydantic (a deployment target, `render systemd`,
reads them: issue #25); anything else goes through a pydantic model built from the same fields, so coercions and
every error are pydantic's word for word (tests/unit/test_plainschema.py holds them to the pydantic model this was,
tests/unit/pydantic_reference.py).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import field
from typing import Any, ClassVar

from qwenops.plainschema import Rule, Schema, about


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


def _metrics_is_a_listen_address(value: str | None, _before: Mapping[str, Any]) -> str | None:
    # A ValueError here is pydantic's value_error ("Value error, ..."), as the field_validator's was.
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


@dataclasses.dataclass(frozen=True, kw_only=True)
class SupervisorOptions(Schema):
    """How the supervisor runs one server: start-up limit, drain, health probes, backoff, FATAL.

    A profile carries these as its `supervise:` section; the supervisor knows nothing of profiles.
    """

    __schema_config__: ClassVar[dict[str, Any]] = {"extra": "forbid", "allow_inf_nan": False}
    __rules__: ClassVar[dict[str, Rule]] = {"metrics": _metrics_is_a_listen_address}

    startup_timeout_s: float = field(default=900.0, metadata=about("longest wait for /health and /v1/models", gt=0))
    drain_timeout_s: float = field(default=30.0, metadata=about("wait after SIGTERM before SIGKILL of the group",
                                                                ge=0))
    health_interval_s: float = field(default=5.0, metadata=about(gt=0))
    health_failures: int = field(default=3, metadata=about("failed probes in a row that count as unhealthy", ge=1))
    backoff_initial_s: float = field(default=1.0, metadata=about(ge=0))
    backoff_max_s: float = field(default=60.0, metadata=about(ge=0))
    max_quick_failures: int = field(default=3, metadata=about("failures within the window before FATAL", ge=1))
    quick_failure_window_s: float = field(default=600.0, metadata=about(gt=0))
    auto_fit: bool = field(default=False, metadata=about(
        "after a start-up failure with a bounded fix (vLLM's own estimate of max_model_len, free memory, "
        "enforce_eager), apply it and start again; at most twice per start"))
    stall_timeout_s: float | None = field(default=120.0, metadata=about(
        "while requests run or wait, restart when no token comes for this long and a one-token request also "
        "stalls (needs /metrics; null turns it off)", gt=0))
    stall_probe_timeout_s: float = field(default=30.0, metadata=about(
        "how long the one-token confirming request may take", gt=0))
    metrics: str | None = field(default=None, metadata=about(
        "serve qwenops' own Prometheus metrics on this host:port (`9400` or `:9400` is 127.0.0.1:9400); off when "
        "null (docs/monitoring.md)"))
