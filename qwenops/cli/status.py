"""`qwenops status`: one screen of what the server is doing now (vLLM's /metrics)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from qwenops.cli._common import finish, json_option, profile_option

if TYPE_CHECKING:
    _FloatParam = click.ParamType[float, Any]  # generic from click 8.3; a plain class before
else:
    _FloatParam = click.ParamType


class Seconds(_FloatParam):
    """A finite number of seconds in [0.2, 3600]: click's FloatRange lets nan through (every comparison
    with nan is false), and time.sleep(nan) is a ValueError."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        import math

        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(seconds) or not 0.2 <= seconds <= 3600:
            self.fail(f"{value!r} is not a number of seconds from 0.2 to 3600", param, ctx)
        return seconds


@click.command("status")
@profile_option
@click.option("--base-url", metavar="URL", help="The server (default: QWENOPS_BASE_URL, else the profile's).")
@click.option("--interval", "interval_s", type=Seconds(), default=2.0, show_default=True,
              help="Seconds between the two scrapes that rates and latency percentiles are taken over.")
@click.option("--watch", is_flag=True, help="Refresh every interval until Ctrl-C (in place on a terminal, with "
              "trends of tokens/s, KV cache use and requests waiting over the last 30 intervals).")
@json_option
def status(*, profile: str | None, base_url: str | None, interval_s: float, watch: bool, json_mode: bool) -> None:
    """Requests running and waiting, KV cache use, preemptions, tokens/s, TTFT and TPOT over the last interval.
    Exit 0 when the server is healthy and every value could be read, 1 when it answers but is not healthy
    or a value cannot be trusted (the reason is printed), 2 when the URL is not a vLLM server, 3 when
    nothing answers in time."""
    from qwenops.cli.views.status import status_view, watch_status
    from qwenops.config.target import configured_server
    from qwenops.results import CommandResult
    from qwenops.status.run import read_status

    if watch and json_mode:
        raise click.UsageError("--watch draws a screen; --json prints one document: choose one")
    server = configured_server(profile, base_url)
    if watch:
        watch_status(server, interval_s)
        return
    result = read_status(server, interval_s=interval_s)
    finish(CommandResult(command="status", data=result, ok=result.ok), json_mode=json_mode, view=status_view)
