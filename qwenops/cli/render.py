"""`qwenops render flags|script|<deployment>|prometheus-rules|grafana|prometheus-config`: files from a profile."""

from __future__ import annotations

from pathlib import Path

import click

from qwenops.cli._common import finish, json_option, override_option, profile_option
from qwenops.results import CommandResult


@click.group()
def render() -> None:
    """Render launch artefacts from a profile."""


@render.command("flags")
@profile_option
@override_option
@json_option
def flags_command(profile: str | None, overrides: tuple[str, ...], json_mode: bool) -> None:
    """Print the server command line, shell-quoted (OpenAI-compatible entrypoint)."""
    from qwenops.cli.views.render import flags_view
    from qwenops.config.loader import parse_overrides
    from qwenops.render.run import render_flags

    data = render_flags(profile, parse_overrides(overrides))
    finish(CommandResult(command="render flags", data=data), json_mode=json_mode, view=flags_view)


@render.command("script")
@profile_option
@override_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the script here.")
@json_option
def script_command(profile: str | None, overrides: tuple[str, ...], output: Path | None, json_mode: bool) -> None:
    """Print (or write with -o) a start_api.sh that execs the server with one flag per line."""
    from qwenops.cli.views.render import script_view, written_view
    from qwenops.config.loader import parse_overrides
    from qwenops.render.run import render_script

    data = render_script(profile, parse_overrides(overrides), output)
    finish(CommandResult(command="render script", data=data), json_mode=json_mode,
           view=written_view if output else script_view)


_DEPLOY_HELP = {
    "systemd": "Print (or write with -o) a hardened Type=notify systemd unit running `qwenops serve` (GPU profiles).",
    "gateway-systemd": "Print (or write with -o) a hardened unit running `qwenops gateway` beside qwenops.service.",
    "env": "Print (or write with -o, mode 0600) the env file for the API key and per-host overrides.",
    "dockerfile": "Print (or write with -o) a Dockerfile: the official vLLM image (GPU) or a CPU image, plus qwenops.",
    "compose": "Print (or write with -o) a Docker Compose file for the profile's Dockerfile.",
    "kubernetes": "Print (or write with -o) Kubernetes manifests: ConfigMap, PVC, Deployment, Service (GPU profiles).",
    "helm-values": "Print (or write with -o) the profile as values for vLLM's production-stack chart (GPU profiles).",
    "kubernetes-monitoring": "Print (or write with -o) a ServiceMonitor and a PrometheusRule for prometheus-operator "
                             "(GPU profiles; a file apart from `render kubernetes`, for clusters with the operator).",
}


def _deploy_command(target: str) -> click.Command:
    @profile_option
    @click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the file here.")
    @json_option
    def command(profile: str | None, output: Path | None, json_mode: bool) -> None:
        from qwenops.cli.views.render import file_view, written_view
        from qwenops.render.run import render_deploy

        data = render_deploy(target, profile, output)
        finish(CommandResult(command=f"render {target}", data=data), json_mode=json_mode,
               view=written_view if output else file_view)

    return click.command(target, help=_DEPLOY_HELP[target])(command)


for _target in _DEPLOY_HELP:
    render.add_command(_deploy_command(_target))


_MONITORING_HELP = {
    "prometheus-rules": "Print (or write with -o) Prometheus alert rules for the profile's vLLM, qwenops serve and "
                        "gateway, each with a `qwenops troubleshoot` runbook.",
    "grafana": "Print (or write with -o) a Grafana dashboard (JSON) of vLLM's and qwenops' metrics.",
    "prometheus-config": "Print (or write with -o) a Prometheus scrape config for vLLM, qwenops serve and the gateway.",
}


def _monitoring_command(target: str) -> click.Command:
    @profile_option
    @click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the file here.")
    @json_option
    def command(profile: str | None, output: Path | None, json_mode: bool) -> None:
        from qwenops.cli.views.render import echo_notes, file_view, written_view
        from qwenops.render.run import render_monitoring

        data = render_monitoring(target, profile, output)
        if not json_mode:
            echo_notes(data)
        finish(CommandResult(command=f"render {target}", data=data), json_mode=json_mode,
               view=written_view if output else file_view)

    return click.command(target, help=_MONITORING_HELP[target])(command)


for _target in _MONITORING_HELP:
    render.add_command(_monitoring_command(_target))
