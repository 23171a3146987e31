"""`qwenops render`'s core: a profile becomes the vLLM argv, a start script, a deployment or a monitoring file.

Each function resolves the profile (CLI > environment > profile > default), renders the target with its
module in this package and returns a typed result (writing the file for -o); nothing prints.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Mapping
from pathlib import Path

from qwenops.config.loader import resolve_profile
from qwenops.config.settings import load_settings


# Plain dataclasses, not pydantic models: each pydantic class costs start-up time to build, and render's
# commands are pure ones (the envelope is the same: results.to_jsonable).
@dataclasses.dataclass(frozen=True)
class RenderedFlags:
    profile: str
    argv: tuple[str, ...]
    command: str
    env: dict[str, str]


@dataclasses.dataclass(frozen=True)
class RenderedFile:
    """A deployment file rendered from a profile (`render systemd|env|dockerfile|compose|...`)."""

    profile: str
    target: str
    text: str
    path: str | None


# target -> "module:function" taking a Profile and returning the file's text (imported when used).
DEPLOY_TARGETS: dict[str, str] = {
    "systemd": "qwenops.render.systemd:systemd_unit",
    "gateway-systemd": "qwenops.render.systemd:gateway_unit",
    "env": "qwenops.render.systemd:env_file",
    "dockerfile": "qwenops.render.docker:dockerfile",
    "compose": "qwenops.render.docker:compose",
    "kubernetes": "qwenops.render.kubernetes:manifests",
    "helm-values": "qwenops.render.kubernetes:helm_values",
    "kubernetes-monitoring": "qwenops.render.kubernetes:monitoring_manifests",
}
# Deployment targets that also take the SLO the profile's files record (they carry alert rules).
SLO_TARGETS = frozenset({"compose", "kubernetes-monitoring"})


# target -> "module:function" taking a Profile and the SLO its file records (render/monitoring.py).
MONITORING_TARGETS: dict[str, str] = {
    "prometheus-rules": "qwenops.render.monitoring:prometheus_rules",
    "grafana": "qwenops.render.monitoring:grafana_dashboard",
    "prometheus-config": "qwenops.render.monitoring:prometheus_config",
}


@dataclasses.dataclass(frozen=True)
class RenderedMonitoring(RenderedFile):
    """A monitoring file, with what the operator must hear about it (no saved SLO, no vLLM metrics)."""

    notes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class RenderedScript:
    profile: str
    script: str
    path: str | None


def render_flags(name: str | None, overrides: Mapping[str, str] | None = None) -> RenderedFlags:
    from qwenops.render.vllm import vllm_argv

    profile = resolve_profile(name, cli_overrides=overrides).profile
    argv = vllm_argv(profile, state_dir=load_settings().state_dir)
    return RenderedFlags(profile=profile.name, argv=tuple(argv), command=shlex.join(argv), env=dict(profile.env))


def render_script(
    name: str | None, overrides: Mapping[str, str] | None = None, output: Path | None = None
) -> RenderedScript:
    from qwenops.render.script import start_script

    profile = resolve_profile(name, cli_overrides=overrides).profile
    text = start_script(profile, state_dir=load_settings().state_dir)
    if output is not None:
        write_output(output, text, mode=0o755)
    return RenderedScript(profile=profile.name, script=text, path=str(output) if output else None)


def render_deploy(target: str, name: str | None, output: Path | None = None) -> RenderedFile:
    """Render TARGET for profile NAME, a pure function of the profile file.

    QWENOPS_<FIELD> overrides are not baked in (env={}): they are per host, and `qwenops serve` reads
    them at start from the environment or the env file these deployments install.
    """
    import importlib

    from qwenops.render.monitoring import slo_from_files

    module, _, function = DEPLOY_TARGETS[target].partition(":")
    render = getattr(importlib.import_module(module), function)
    resolved = resolve_profile(name, env={})
    profile = resolved.profile
    # Targets that carry the alert rules take the latency SLO `qwenops tune` saved in the profile's files.
    text: str = render(profile, slo_from_files(resolved.files)) if target in SLO_TARGETS else render(profile)
    if output is not None:
        # An env file is where the API key goes: private from the start.
        write_output(output, text, mode=0o600 if target == "env" else 0o644)
    return RenderedFile(profile=profile.name, target=target, text=text, path=str(output) if output else None)


def render_monitoring(target: str, name: str | None, output: Path | None = None) -> RenderedMonitoring:
    """Render the monitoring TARGET for profile NAME: a pure function of the profile's files (the SLO
    `qwenops tune` saved is read from their header)."""
    import importlib

    from qwenops.render.monitoring import notes, slo_from_files

    module, _, function = MONITORING_TARGETS[target].partition(":")
    render = getattr(importlib.import_module(module), function)
    resolved = resolve_profile(name, env={})
    slo = slo_from_files(resolved.files)
    text: str = render(resolved.profile, slo)
    if output is not None:
        write_output(output, text, mode=0o644)
    return RenderedMonitoring(profile=resolved.profile.name, target=target, text=text,
                              path=str(output) if output else None, notes=tuple(notes(resolved.profile, slo)))


def write_output(output: Path, text: str, *, mode: int) -> None:
    """Write a rendered file for `-o` (whole, with MODE from its first byte, never through a symlink: see
    qwenops.atomicfile); a path that cannot be written is bad input naming the fix."""
    from qwenops.atomicfile import TargetRefused, write_atomic
    from qwenops.errors import BadInputError

    try:
        write_atomic(output, text, mode=mode)
    except TargetRefused as exc:
        raise BadInputError(f"cannot write {output}: {exc.strerror}", field="--output", hint=exc.hint) from None
    except OSError as exc:
        hint = (f"create {output.parent} first, or choose another path" if not output.parent.is_dir()
                else "choose a path this user can write")
        raise BadInputError(f"cannot write {output}: {exc.strerror}", field="--output", hint=hint) from None
