"""`qwenops serve`'s own metrics (Prometheus text format) and the opt-in listener that serves them.

Off unless the profile sets `supervise.metrics` (host:port); the listener binds loopback unless told
otherwise. Names follow Prometheus' conventions (units in names, `_total` counters) and are listed in
docs/monitoring.md, which the rules and the dashboard (qwenops/render/monitoring.py) query.

Every labelled counter is created at 0 for each of its (bounded) label values when the registry is
made, so `increase()` sees the first restart of a kind as 0 -> 1 rather than a series that appears at 1.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Info

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

# Why the runner ended an attempt and restarted it: a bounded set (the label values of restarts_total).
RESTART_CAUSES: tuple[str, ...] = (
    "engine_died",  # vLLM logged its engine's death (EngineCore killed, crashed, out of memory in service)
    "exited",  # the server process exited on its own
    "health_failed",  # health_failures probes in a row failed
    "startup_failed",  # exited while starting, or not ready within startup_timeout_s
    "engine_stalled",  # no token for stall_timeout_s and a one-token request got no answer
    "unservable",  # the server started but cannot serve chat completions
)
STATES: tuple[str, ...] = ("STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL")


class ServeMetrics:
    """The registry of one `qwenops serve` and the updates the runner and serve make to it."""

    def __init__(self, *, profile: str, vllm_version: str, qwenops_version: str, engine: str,
                 last_fatal: tuple[str, float] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._state = Gauge("qwenops_serve_state", "1 for the supervisor's current state, 0 for the others",
                            ["state"], registry=r)
        self._restarts = Counter("qwenops_serve_restarts", "Restarts of vLLM by the supervisor, by cause",
                                 ["cause"], registry=r)
        self._stalls = Counter("qwenops_serve_stall_confirmations",
                               "Stalls confirmed by the progress watchdog (no token, and a one-token request "
                               "unanswered); each one restarts vLLM", registry=r)
        self._fits = Counter("qwenops_serve_auto_fit_changes", "Values serve --auto-fit changed after a failed "
                             "start, by field", ["field"], registry=r)
        self._fatal = Gauge("qwenops_serve_last_fatal_info", "1 with the cause of the last FATAL (this run or "
                            "the one before, read back from the state directory); absent when none",
                            ["cause"], registry=r)
        self._fatal_at = Gauge("qwenops_serve_last_fatal_timestamp_seconds", "When the supervisor last gave up "
                               "(FATAL), in Unix seconds; 0 when it never has", registry=r)
        self._ready = Gauge("qwenops_serve_time_to_ready_seconds", "How long the last start took from spawn to "
                            "ready (/health and /v1/models)", registry=r)
        self._started = Gauge("qwenops_serve_start_time_seconds", "When this qwenops serve started, in Unix "
                              "seconds (uptime is time() minus this)", registry=r)
        self._running_since = Gauge("qwenops_serve_running_since_timestamp_seconds", "When vLLM last became "
                                    "ready, in Unix seconds; 0 while it is not RUNNING", registry=r)
        info = Info("qwenops_serve_supervisor", "The profile, vLLM version, engine and qwenops version "
                    "this supervisor runs", registry=r)
        info.info({"profile": profile, "vllm_version": vllm_version, "engine": engine,
                   "qwenops_version": qwenops_version})
        for cause in RESTART_CAUSES:
            self._restarts.labels(cause=cause)
        self._started.set(time.time())
        self.set_state("STOPPED")
        if last_fatal is not None:
            self.fatal(*last_fatal)

    # The runner's hooks (qwenops.supervisor.runner.Meter).
    def set_state(self, state: str) -> None:
        for name in STATES:
            self._state.labels(state=name).set(1 if name == state else 0)
        if state != "RUNNING":
            self._running_since.set(0)

    def restarted(self, cause: str) -> None:
        self._restarts.labels(cause=cause if cause in RESTART_CAUSES else "exited").inc()

    def stall_confirmed(self) -> None:
        self._stalls.inc()

    def ready(self, took_s: float) -> None:
        self._ready.set(took_s)
        self._running_since.set(time.time())

    def fatal(self, cause: str, at: float | None = None) -> None:
        self._fatal.clear()
        self._fatal.labels(cause=cause).set(1)
        self._fatal_at.set(time.time() if at is None else at)

    # serve's hook
    def auto_fitted(self, fields: Iterable[str]) -> None:
        for name in fields:
            self._fits.labels(field=name).inc()

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


# ----------------------------------------------------------------------- the last FATAL, across runs


# The records live with the other records of a run's lifetime (supervisor/lifetime.py); re-exported.
from qwenops.supervisor.lifetime import (  # noqa: E402
    fatal_record,
    read_last_fatal,
    write_last_fatal,
)

__all__ = ["fatal_record", "read_last_fatal", "write_last_fatal"]


# -------------------------------------------------------------------------------- the listener


class MetricsListener:
    """prometheus_client's WSGI server in a daemon thread, bound only where the profile says."""

    def __init__(self, metrics: ServeMetrics, host: str, port: int) -> None:
        from prometheus_client import start_http_server

        self.host, self.port = host, port
        server, thread = start_http_server(port, addr=host, registry=metrics.registry)
        self._server: WSGIServer = server
        self._thread: threading.Thread = thread

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

