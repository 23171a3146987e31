"""The supervision loop: spawn, wait for ready, watch health, back off and restart, give up, stop.

Everything with side effects comes in through the constructor (spawn, prober, notifier, clock), so
unit tests drive every edge with a fake clock and fake processes while tests/integration run the
same loop on real processes. The loop is single-threaded on purpose: only the output pump runs
beside it. The pump feeds the BootLog of its own attempt (the loop only reads its fields; the
loop's one write, `serving`, is a plain flag), writes the log file and calls the line sink, which
may echo to the console: an echo that shares a console with the Observer must lock it
(qwenops.cli.views.serve.ConsoleReporter does).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from qwenops.supervisor.bootlog import BootLog, FatalCause, Phase
from qwenops.supervisor.health import Probe, Progress
from qwenops.supervisor.notify import Notifier
from qwenops.supervisor.options import SupervisorOptions
from qwenops.supervisor.states import TERMINAL, Event, State, transition


class Server(Protocol):
    """What the runner needs from a spawned server (qwenops.supervisor.process.ServerProcess)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def stop(self, drain_timeout_s: float, *, hurry: threading.Event | None = None) -> bool: ...

    def kill(self) -> None: ...


class Prober(Protocol):
    def probe(self, *, check_models: bool = True) -> Probe: ...

    def progress(self) -> Progress | None:
        """Requests in flight and tokens generated so far; None when the server exposes no metrics."""

    def generates(self, timeout_s: float) -> bool:
        """Whether a one-token request is answered within timeout_s."""


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wait(self, wake: threading.Event, timeout_s: float) -> None:
        """Sleep up to timeout_s, returning early when `wake` is set (a stop request)."""


class RealClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, wake: threading.Event, timeout_s: float) -> None:
        wake.wait(timeout_s)


# spawn(on_line) starts one attempt; every line the server prints must be passed to on_line.
Spawn = Callable[[Callable[[str], object]], Server]


@dataclass(frozen=True)
class Transition:
    at_s: float  # seconds since the supervisor started
    source: State
    event: Event
    target: State
    reason: str


class Observer(Protocol):
    """Live progress for a console or a log; every method is called from the supervising thread
    (the server's own lines reach a console from the output pump's thread, see the module docstring)."""

    def on_transition(self, change: Transition) -> None: ...

    def on_phase(self, phase: Phase, elapsed_s: float) -> None: ...

    def on_note(self, text: str) -> None:
        """Something the operator must hear about that is not a state change (a fitted value, a cleanup)."""


class NullObserver:
    def on_transition(self, change: Transition) -> None:
        pass

    def on_phase(self, phase: Phase, elapsed_s: float) -> None:
        pass

    def on_note(self, text: str) -> None:
        pass


class Meter(Protocol):
    """What the supervisor counts for its metrics (qwenops.supervisor.metrics.ServeMetrics)."""

    def set_state(self, state: str) -> None: ...

    def restarted(self, cause: str) -> None: ...

    def stall_confirmed(self) -> None: ...

    def ready(self, took_s: float) -> None: ...

    def fatal(self, cause: str, at: float | None = None) -> None: ...


class NullMeter:
    def set_state(self, state: str) -> None:
        pass

    def restarted(self, cause: str) -> None:
        pass

    def stall_confirmed(self) -> None:
        pass

    def ready(self, took_s: float) -> None:
        pass

    def fatal(self, cause: str, at: float | None = None) -> None:
        pass


@dataclass(frozen=True)
class Outcome:
    """How supervision ended: STOPPED (asked to) or FATAL (gave up, with the cause when known)."""

    state: State
    reason: str
    restarts: int
    cause: FatalCause | None
    transitions: tuple[Transition, ...]
    ready_after_s: tuple[float, ...]  # start-up time of each attempt that became ready

    @property
    def ok(self) -> bool:
        return self.state is State.STOPPED


@dataclass
class _Attempt:
    server: Server
    bootlog: BootLog
    started_at: float
    reported_phase: Phase = Phase.LAUNCHING
    health_failures: int = 0
    next_probe_at: float = 0.0
    first_healthy_at: float | None = None
    tokens: float | None = None  # generation_tokens_total at the last progress probe
    progress_at: float = 0.0  # when tokens last moved, or the server was last seen idle


@dataclass
class _Stats:
    restarts: int = 0
    failures: deque[float] = field(default_factory=deque)
    transitions: list[Transition] = field(default_factory=list)
    ready_after_s: list[float] = field(default_factory=list)


class Supervisor:
    """Runs one server under supervision until it is stopped or given up on. See states.TRANSITIONS."""

    def __init__(
        self,
        supervision: SupervisorOptions,
        *,
        spawn: Spawn,
        prober: Prober,
        notifier: Notifier | None = None,
        clock: Clock | None = None,
        observer: Observer | None = None,
        meter: Meter | None = None,
        tick_s: float = 0.05,
    ) -> None:
        self.config = supervision
        self._spawn_server = spawn
        self._prober = prober
        self._notifier = notifier or Notifier(None)
        self._clock = clock or RealClock()
        self._observer = observer or NullObserver()
        self._meter = meter or NullMeter()
        self._restart_cause = "exited"  # why the next spawn from BACKOFF is a restart (metrics.RESTART_CAUSES)
        self._tick_s = tick_s
        self._wake = threading.Event()
        self._hurry = threading.Event()  # a second stop request: skip the rest of the drain
        self._stop_reason = ""
        self.state = State.STOPPED
        self._attempt: _Attempt | None = None
        self._retry_at = 0.0
        self._t0 = self._clock.monotonic()
        self._stats = _Stats()
        self._outcome_reason = ""
        self._cause: FatalCause | None = None
        # Ping the watchdog at least twice per WatchdogSec, as sd_watchdog_enabled(3) advises.
        interval = supervision.health_interval_s
        if self._notifier.watchdog_interval_s:
            interval = min(interval, self._notifier.watchdog_interval_s / 2)
        self._probe_interval_s = interval
        self._next_watchdog_at = 0.0

    # ------------------------------------------------------------------ public

    def request_stop(self, reason: str = "stop requested") -> None:
        """Ask for a clean shutdown; a second request (Ctrl-C twice) cuts the drain short.

        Safe to call from a signal handler or another thread: it only sets events.
        """
        if self._wake.is_set():
            self._hurry.set()
            return
        self._stop_reason = reason
        self._wake.set()

    def run(self) -> Outcome:
        try:
            self._spawn()
            while self.state not in TERMINAL:
                if self._wake.is_set() and self.state is not State.STOPPING:
                    self._stop()
                    continue
                if self.state is State.STARTING:
                    self._step_starting()
                elif self.state is State.RUNNING:
                    self._step_running()
                elif self.state is State.BACKOFF and self._now() >= self._retry_at:
                    self._spawn()
                    continue
                if self.state in (State.STARTING, State.BACKOFF):
                    self._feed_watchdog_while_restarting()
                if self.state not in TERMINAL:
                    self._clock.wait(self._wake, self._tick_s)
        except BaseException:
            # Whatever broke the loop (a bug, an unexpected OSError), the server must not outlive us.
            if self._attempt is not None:
                self._attempt.server.kill()
            raise
        finally:
            self._notifier.close()
        return Outcome(
            state=self.state,
            reason=self._outcome_reason,
            restarts=self._stats.restarts,
            cause=self._cause,
            transitions=tuple(self._stats.transitions),
            ready_after_s=tuple(self._stats.ready_after_s),
        )

    # ------------------------------------------------------------------ steps

    def _now(self) -> float:
        return self._clock.monotonic()

    def _fire(self, event: Event, reason: str) -> None:
        target = transition(self.state, event)
        change = Transition(round(self._now() - self._t0, 3), self.state, event, target, reason)
        self._stats.transitions.append(change)
        self.state = target
        self._meter.set_state(target.value)
        self._observer.on_transition(change)

    def _spawn(self) -> None:
        bootlog = BootLog()
        if self.state is State.BACKOFF:
            self._stats.restarts += 1
            self._meter.restarted(self._restart_cause)
        server = self._spawn_server(bootlog.feed)
        now = self._now()
        self._attempt = _Attempt(server=server, bootlog=bootlog, started_at=now)
        self._fire(Event.SPAWN, f"spawned pid {server.pid}")
        # systemd's TimeoutStartSec (90 s by default) is shorter than a GPU model load; extend it to
        # our own start-up timeout so the profile, not the unit file, decides when a start failed.
        self._notifier.send(STATUS=f"starting vLLM (pid {server.pid})",
                            EXTEND_TIMEOUT_USEC=str(int(self.config.startup_timeout_s * 1e6)))

    def _step_starting(self) -> None:
        attempt = self._require_attempt()
        now = self._now()
        self._report_phase(attempt, now)
        code = attempt.server.poll()
        if code is not None:
            self._exited(attempt, f"server exited with code {code} while starting", kind="startup_failed")
            return
        if self._unservable(attempt):
            return
        if now - attempt.started_at > self.config.startup_timeout_s:
            attempt.server.stop(min(self.config.drain_timeout_s, 5.0))
            self._exited(attempt, f"not ready after {self.config.startup_timeout_s:g} s (startup_timeout_s)",
                         kind="startup_failed")
            return
        probe = self._prober.probe(check_models=True)
        if probe.healthy and attempt.first_healthy_at is None:
            attempt.first_healthy_at = now
        if probe.ready:
            attempt.bootlog.serving = True
            took = now - attempt.started_at
            self._stats.ready_after_s.append(round(took, 3))
            self._fire(Event.READY, f"ready after {took:.1f} s")
            self._meter.ready(took)
            self._notifier.ready(f"serving (ready after {took:.1f} s)")
            self._notifier.watchdog()
            attempt.next_probe_at = now + self._probe_interval_s

    def _step_running(self) -> None:
        attempt = self._require_attempt()
        if attempt.bootlog.engine_death is not None:
            # vLLM's API server outlives its engine by seconds, answering 503; restart now instead.
            # In-flight streams already got vLLM's in-band error, so there is nothing left to drain.
            # Checked before the exit code: the line says why, the code (often 0 or 1) does not.
            attempt.server.stop(min(self.config.drain_timeout_s, 1.0))
            self._exited(attempt, f"engine died: {attempt.bootlog.engine_death}", kind="engine_died")
            return
        code = attempt.server.poll()
        if code is not None:
            self._exited(attempt, f"server exited with code {code}", kind="exited")
            return
        if self._unservable(attempt):  # the output pump may lag the first good probe by a line
            return
        now = self._now()
        if now < attempt.next_probe_at:
            return
        attempt.next_probe_at = now + self._probe_interval_s
        probe = self._prober.probe(check_models=False)
        if probe.healthy:
            if attempt.health_failures:
                self._notifier.status("serving")
            attempt.health_failures = 0
            if self._stalled(attempt, now):
                return
            # WATCHDOG=1 only after a good probe: a hung server must let systemd's watchdog fire.
            self._notifier.watchdog()
            return
        attempt.health_failures += 1
        limit = self.config.health_failures
        self._notifier.status(f"unhealthy ({attempt.health_failures}/{limit}): {probe.detail}")
        if attempt.health_failures >= limit:
            attempt.server.stop(min(self.config.drain_timeout_s, 5.0))
            self._exited(attempt, f"{limit} failed health probes in a row (last: {probe.detail})",
                         kind="health_failed")

    def _stalled(self, attempt: _Attempt, now: float) -> bool:
        """The progress watchdog: tokens must keep coming, or a tiny request must still be answered.

        /health stays 200 on a hung engine (a reported vLLM bug), so the evidence is vLLM's own
        token counter. When it has not moved for stall_timeout_s, one request with max_tokens 1
        confirms before any restart: a long prefill or a slow answer gets its token, and so does an
        idle server, which is therefore never restarted for being idle. The confirming request is
        sent when idle too (at most once per stall_timeout_s) because vLLM's request gauges come from
        the engine: a hung engine stops updating them, and requests queued since look like none.
        """
        limit = self.config.stall_timeout_s
        if limit is None:
            return False
        progress = self._prober.progress()
        if progress is None:
            return False  # no metrics (e.g. --disable-log-stats): nothing to judge progress by
        if progress.tokens != attempt.tokens or attempt.tokens is None:
            attempt.tokens, attempt.progress_at = progress.tokens, now
            return False
        if now - attempt.progress_at < limit:
            return False
        if self._prober.generates(self.config.stall_probe_timeout_s):
            attempt.progress_at = self._now()  # slow or idle, not stuck
            return False
        evidence = (f"no token for {now - attempt.progress_at:.0f} s with {progress.running:g} requests running and "
                    f"{progress.waiting:g} waiting (vllm:generation_tokens_total stuck at {progress.tokens:g}), "
                    f"and a one-token request got no answer in {self.config.stall_probe_timeout_s:g} s")
        cause = FatalCause("engine_stalled", "the engine stopped making progress", evidence,
                           "restarted; if it recurs, look for one huge prompt or a stuck worker "
                           "(`qwenops troubleshoot`)", retryable=True)
        attempt.server.stop(min(self.config.drain_timeout_s, 5.0))
        self._meter.stall_confirmed()
        self._exited(attempt, f"engine stalled: {evidence}", cause, kind="engine_stalled")
        return True

    def _unservable(self, attempt: _Attempt) -> bool:
        if attempt.bootlog.unservable is None:
            return False
        attempt.server.stop(min(self.config.drain_timeout_s, 5.0))
        self._exited(attempt, "the server cannot serve chat completions", kind="unservable")
        return True

    def _exited(self, attempt: _Attempt, reason: str, cause: FatalCause | None = None, *,
                kind: str = "exited") -> None:
        # The leader is gone but EngineCore/Worker may live on as orphans holding memory and the port.
        attempt.server.kill()
        self._attempt = None
        self._fire(Event.EXIT, reason)
        now = self._now()
        failures = self._stats.failures
        failures.append(now)
        while failures and now - failures[0] > self.config.quick_failure_window_s:
            failures.popleft()
        cause = cause or attempt.bootlog.cause
        if cause is not None and not cause.retryable:
            self._give_up(cause.message(), cause)
            return
        if len(failures) >= self.config.max_quick_failures:
            last = cause.message() if cause else reason
            window = self.config.quick_failure_window_s
            self._give_up(f"{len(failures)} failures within {window:g} s; last: {last}", cause)
            return
        self._restart_cause = kind
        delay = min(self.config.backoff_initial_s * 2 ** (len(failures) - 1), self.config.backoff_max_s)
        self._retry_at = now + delay
        why = cause.message() if cause else reason
        self._fire(Event.RETRY, f"restart in {delay:g} s ({why})")
        self._notifier.status(f"restarting in {delay:g} s: {why}")

    def _give_up(self, reason: str, cause: FatalCause | None) -> None:
        self._cause = cause
        self._outcome_reason = reason
        self._meter.fatal(cause.category if cause is not None else "too_many_failures")
        self._fire(Event.GIVE_UP, reason)
        self._notifier.status(f"FATAL: {reason}")

    def _stop(self) -> None:
        reason = self._stop_reason or "stop requested"
        attempt = self._attempt
        if attempt is None:
            self._fire(Event.STOP, reason)
            self._outcome_reason = reason
            return
        drain = self.config.drain_timeout_s
        self._fire(Event.STOP, f"{reason}; draining up to {drain:g} s (stop again to kill at once)")
        self._notifier.stopping(f"stopping: {reason}")
        drained = attempt.server.stop(self.config.drain_timeout_s, hurry=self._hurry)
        self._attempt = None
        if drained:
            how = "drained"
        elif self._hurry.is_set():
            how = "killed on a second stop request"
        else:
            how = f"killed after the {self.config.drain_timeout_s:g} s drain timeout"
        self._outcome_reason = f"{reason}; server {how}"
        self._fire(Event.STOPPED, f"process group gone ({how})")

    def _feed_watchdog_while_restarting(self) -> None:
        # WatchdogSec watches this supervisor, not the model. Once armed (at the first READY=1) it
        # must keep hearing from us through a backoff and a model load that can outlast WatchdogSec,
        # or systemd kills the supervisor mid-restart. The loop is alive and making progress here:
        # a load that never ends is bounded by startup_timeout_s, and STATUS= says what is going on.
        # Only a RUNNING server withholds pings, while it fails its health probes.
        now = self._now()
        if self._notifier.watchdog_interval_s and now >= self._next_watchdog_at:
            self._next_watchdog_at = now + self._probe_interval_s
            self._notifier.watchdog()

    def _report_phase(self, attempt: _Attempt, now: float) -> None:
        phase = attempt.bootlog.phase
        if phase is not attempt.reported_phase:
            attempt.reported_phase = phase
            self._observer.on_phase(phase, now - attempt.started_at)
            self._notifier.status(f"starting: {phase.value}")

    def _require_attempt(self) -> _Attempt:
        if self._attempt is None:  # pragma: no cover - guarded by the state machine
            raise RuntimeError(f"no server in state {self.state.value}")
        return self._attempt
