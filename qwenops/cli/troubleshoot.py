"""`qwenops troubleshoot`: evidence from logs, a live server and this host -> findings with fixes."""

from __future__ import annotations

import click

from qwenops.cli._common import finish, json_option, profile_option


@click.command("troubleshoot")
@profile_option
@click.option("--log", "logs", multiple=True, metavar="FILE",
              help="A vLLM log of any version (- for stdin); repeatable.")
@click.option("--journal", metavar="UNIT", callback=lambda _c, _p, v: _checked("journal", v),
              help="Read the log of a systemd unit (journalctl -u UNIT).")
@click.option("--docker", metavar="CONTAINER", callback=lambda _c, _p, v: _checked("docker", v),
              help="Read the log of a container (docker logs CONTAINER).")
@click.option("--base-url", metavar="URL", help="A live server: read /health, /v1/models and /metrics.")
@click.option("--probe", is_flag=True,
              help="Send real requests to the live server: one long answer (interrupted?), one ordinary answer "
                   "(loops?), a concurrency ramp to max_num_seqs (which memory limit binds?), and their latency.")
@click.option("--client-timeout", "client_timeout_s", type=click.FloatRange(0, 86400, min_open=True),
              callback=lambda _c, _p, v: _finite("--client-timeout", v),
              metavar="SECONDS", help="The client's whole-answer timeout to probe against (default: the profile's "
                                      "client.timeout_s).")
@click.option("--host/--no-host", "host", default=None,
              help="Check this host's CPU, memory and GPU users (default: on when reading a live server).")
@json_option
def troubleshoot(*, profile: str | None, logs: tuple[str, ...], journal: str | None, docker: str | None,
                 base_url: str | None, probe: bool, client_timeout_s: float | None, host: bool | None,
                 json_mode: bool) -> None:
    """Name what went wrong, with the evidence and the change that fixes it.

    Without a source it reads the profile's live server and this host. Exit 0 when no finding is an
    error, 1 when one is, 2 for bad input, 3 when a source cannot be reached (a server that does not
    answer in time is a finding beside the host's or a log's, exit 3 only when nothing else is found).
    """
    from qwenops.cli.views.troubleshoot import troubleshoot_view
    from qwenops.results import CommandResult
    from qwenops.troubleshoot.run import build_request, run_troubleshoot

    request = build_request(profile=profile, logs=logs, journal=journal, docker=docker, base_url=base_url,
                            host=host, probe=probe, client_timeout_s=client_timeout_s)
    report = run_troubleshoot(request)
    finish(CommandResult(command="troubleshoot", data=report, ok=report.ok), json_mode=json_mode,
           view=troubleshoot_view)


def _checked(kind: str, value: str | None) -> str | None:
    """A unit or container name, checked as it is parsed: an empty one is refused (not taken as "none
    given"), and one that is no name (`--docker=--help`) never reaches the tool."""
    if value is None:
        return None
    from qwenops.troubleshoot.sources import check_container, check_unit

    return check_unit(value) if kind == "journal" else check_container(value)


def _finite(option: str, value: float | None) -> float | None:
    """click's FloatRange lets nan through (every comparison with it is false)."""
    import math

    if value is not None and math.isnan(value):
        from qwenops.errors import BadInputError

        raise BadInputError("nan is not a number of seconds", field=option)
    return value
