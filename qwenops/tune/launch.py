"""Each candidate under the supervisor: `qwenops.serve.run.serve` in a thread, stopped as a signal would stop it.

Every process tune starts is started, watched and ended by the supervisor (its own process group, killed
as a group, under the guard that ends it if qwenops itself dies). A candidate gets one attempt: a start
that fails, or a server that dies while measured, is FATAL at once with the classified cause; tune never
restarts a candidate blindly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from qwenops.errors import QwenopsError
from qwenops.tune.results import Candidate, FailureCause

if TYPE_CHECKING:
    from qwenops.config.profile import Profile
    from qwenops.config.settings import Settings
    from qwenops.config.target import ConfiguredServer
    from qwenops.serve.run import ServePlan, ServeResult
    from qwenops.supervisor.bootlog import Phase
    from qwenops.supervisor.runner import Transition

# Causes no candidate value can change: after one of them every other start would fail the same way.
CANDIDATE_INDEPENDENT = frozenset({"model_not_found", "cuda_driver_mismatch", "port_in_use", "engine_missing",
                                   "weights_oom", "insufficient_free_memory", "unauthorized"})
JOIN_GRACE_S = 30.0  # beyond the drain timeout, for the supervisor to kill and reap the group


def candidate_plan(profile: str | None, candidate: Candidate, *, overrides: Mapping[str, str], log_dir: Path,
                   startup_timeout_s: float) -> ServePlan:
    """serve's plan for CANDIDATE: its three values as command-line overrides; one attempt; its own log."""
    from qwenops.serve.run import plan_serve

    values = {**overrides, **{key: str(value) for key, value in candidate.values().items()}}
    plan = plan_serve(profile, overrides=values)
    supervise = plan.supervise.model_copy(update={
        "max_quick_failures": 1, "auto_fit": False,
        "startup_timeout_s": max(1.0, min(plan.supervise.startup_timeout_s, startup_timeout_s)),
    })
    return plan.model_copy(update={"supervise": supervise, "log_file": str(log_dir / f"tune-{candidate.slug}.log")})


def started_server(base_url: str, profile: Profile, settings: Settings) -> ConfiguredServer:
    """A server tune started, with the key it was started with: serve hands QWENOPS_API_KEY to vLLM as
    VLLM_API_KEY (serve.child_env), so that key, and no other, goes with every request tune makes to it
    (the load's streams and the /metrics scrapes); none when QWENOPS_API_KEY is not set. QWENOPS_BASE_URL
    names a server tune does not measure, so the server configured here is the one tune started."""
    from qwenops.config.target import ConfiguredServer

    return ConfiguredServer(base_url, base_url, "the server tune started (VLLM_API_KEY = QWENOPS_API_KEY)",
                            profile, settings)


class _Observer:
    def __init__(self, ready: threading.Event, on_phase: Callable[[str], object]) -> None:
        self._ready = ready
        self._on_phase = on_phase

    def on_transition(self, change: Transition) -> None:
        from qwenops.supervisor.states import State

        if change.target is State.RUNNING:
            self._ready.set()

    def on_phase(self, phase: Phase, elapsed_s: float) -> None:
        self._on_phase(f"starting: {phase.value} ({elapsed_s:.0f} s)")

    def on_note(self, text: str) -> None:
        pass


class ServedCandidate:
    """One candidate's server, started on construction; `wait_ready`, measure, then `close`."""

    def __init__(self, plan: ServePlan, *, on_phase: Callable[[str], object] = lambda _text: None,
                 settings: Settings | None = None) -> None:
        from qwenops.config.loader import load_profile
        from qwenops.config.settings import load_settings

        self.plan = plan
        # Before the thread starts: the load and the scrapes go to this server with this key (started_server).
        self.server = started_server(plan.base_url, load_profile(plan.profile, cli_overrides=plan.overrides),
                                     settings if settings is not None else load_settings())
        self._ready = threading.Event()
        self._done = threading.Event()
        self._stop_lock = threading.Lock()
        self._request_stop: Callable[[str], None] | None = None
        self._stop_wanted = False
        self._result: ServeResult | None = None
        self._error: QwenopsError | None = None
        self._observer = _Observer(self._ready, on_phase)
        self._thread = threading.Thread(target=self._run, name=f"tune-{plan.port}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from qwenops.serve.run import serve

        try:
            self._result = serve(self.plan, observer=self._observer, handle_signals=False,
                                 on_supervisor=self._register)
        except QwenopsError as exc:  # refused before spawning (a taken port, no engine)
            self._error = exc
        finally:
            self._done.set()
            self._ready.set()  # wake a waiter: the server will never be ready now

    def _register(self, request_stop: Callable[[str], None]) -> None:
        with self._stop_lock:
            self._request_stop = request_stop
            wanted = self._stop_wanted
        if wanted:
            request_stop("tune: stop before ready")

    def wait_ready(self) -> FailureCause | None:
        """Block until the server serves (None) or has ended (the cause)."""
        self._ready.wait()
        if self._done.is_set():
            return self._cause()
        return None

    def alive(self) -> bool:
        return not self._done.is_set()

    def preemptions(self) -> float | None:
        from qwenops.troubleshoot.live import scrape_metrics

        try:
            return scrape_metrics(self.server, timeout_s=10.0).counters.get("preemptions")
        except QwenopsError:
            return None

    def close(self) -> FailureCause | None:
        """Stop the server (drain, then the group is killed) and wait for the supervisor; the cause if it died."""
        died = self._done.is_set()
        with self._stop_lock:
            self._stop_wanted = True
            request_stop = self._request_stop
        if request_stop is not None and not died:
            request_stop("tune: candidate measured")
        self._thread.join(self.plan.supervise.drain_timeout_s + JOIN_GRACE_S)
        return self._cause() if died else None

    def _cause(self) -> FailureCause:
        if self._error is not None:
            return FailureCause(category=self._error.code, title=self._error.message, line="",
                                fix=self._error.hint or "")
        result = self._result
        if result is not None and result.cause is not None:
            c = result.cause
            return FailureCause(category=c.category, title=c.title, line=c.line, fix=c.fix)
        found = _classify_log(Path(self.plan.log_file))
        if found is not None:
            return found
        reason = result.reason if result is not None else "the supervisor ended without a result"
        return FailureCause(category="engine_dead", title="the server exited", line=reason,
                            fix=f"read {self.plan.log_file}")


def _classify_log(path: Path) -> FailureCause | None:
    """The shared classifier's root cause in the candidate's own log (for a death after it served)."""
    from qwenops.vllmlog.classify import classify_text

    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    errors = [f for f in classify_text(text) if f.severity == "error"]
    if not errors:
        return None
    root = errors[0]
    return FailureCause(category=root.category, title=root.title, line=root.line, fix=root.fix)
