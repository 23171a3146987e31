"""`qwenops status`: one screen of what the server is doing now (vLLM's /metrics)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from qwenops.cli._common import finish, json_option, profile_option

if TYPE_CHECKING:
    from rich.console import RenderableType

    from qwenops.status import ServerStatus


@click.command("status")
@profile_option
@click.option("--base-url", metavar="URL", help="The server (default: QWENOPS_BASE_URL, else the profile's).")
@click.option("--interval", "interval_s", type=click.FloatRange(0.2, 3600), default=2.0, show_default=True,
              help="Seconds between the two scrapes that rates and latency percentiles are taken over.")
@click.option("--watch", is_flag=True, help="Refresh every interval until Ctrl-C (in place on a terminal).")
@json_option
def status(*, profile: str | None, base_url: str | None, interval_s: float, watch: bool, json_mode: bool) -> None:
    """Requests running and waiting, KV cache use, preemptions, tokens/s, TTFT and TPOT over the last interval.
    Exit 0 when the server is healthy, 1 when it answers but is not, 3 when nothing answers."""
    from qwenops.config.target import configured_server
    from qwenops.results import CommandResult
    from qwenops.status import read_status

    if watch and json_mode:
        raise click.UsageError("--watch draws a screen; --json prints one document: choose one")
    url = configured_server(profile, base_url).url
    if watch:
        _watch(url, interval_s)
        return
    result = read_status(url, interval_s=interval_s)
    finish(CommandResult(command="status", data=result, ok=result.healthy), json_mode=json_mode, view=_view)


def _watch(url: str, interval_s: float) -> None:
    import sys

    from qwenops.cli.output import stdout_console
    from qwenops.status import read_status

    console = stdout_console()
    try:
        if sys.stdout.isatty():
            from rich.live import Live

            with Live(_view(read_status(url, interval_s=interval_s)), console=console, auto_refresh=False) as live:
                while True:
                    live.update(_view(read_status(url, interval_s=interval_s)), refresh=True)
        else:
            while True:  # a pipe or a log: one line per interval
                s = read_status(url, interval_s=interval_s)
                print(_line(s), flush=True)
    except KeyboardInterrupt:
        return  # Ctrl-C is how a watch ends


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:.1f} ms"


def _num(value: float | None, fmt: str = "{:g}") -> str:
    return "—" if value is None else fmt.format(value)


def _line(s: ServerStatus) -> str:
    return (f"{'healthy' if s.healthy else 'UNHEALTHY'} running={_num(s.requests_running)} "
            f"waiting={_num(s.requests_waiting)} kv={_num(s.kv_cache_usage, '{:.0%}')} "
            f"preempted={_num(s.preemptions_total)} gen={_num(s.generation_tokens_per_s, '{:.1f}')}/s "
            f"ttft_p50={_ms(s.ttft_p50_s)} tpot_p50={_ms(s.tpot_p50_s)}")


def _view(s: ServerStatus) -> RenderableType:
    from qwenops.cli.views.tables import table

    if s.uptime_s is None:
        uptime = "—"
    else:
        uptime = f"{s.uptime_s / 3600:.1f} h" if s.uptime_s >= 3600 else f"{s.uptime_s:.0f} s"
    rows = [
        ("health", "ok" if s.healthy else "NOT HEALTHY", f"serving {', '.join(s.models) or '—'}; up {uptime}"),
        ("requests", f"{_num(s.requests_running)} running, {_num(s.requests_waiting)} waiting",
         f"{_num(s.requests_finished)} finished in the last {s.interval_s:.1f} s"),
        ("KV cache", _num(s.kv_cache_usage, "{:.1%}"), f"{_num(s.preemptions_total)} preemptions since start"),
        ("tokens/s", f"{_num(s.generation_tokens_per_s, '{:.1f}')} out",
         f"{_num(s.prompt_tokens_per_s, '{:.1f}')} prompt tokens/s in"),
        ("TTFT", f"p50 {_ms(s.ttft_p50_s)}", f"p99 {_ms(s.ttft_p99_s)}"),
        ("TPOT", f"p50 {_ms(s.tpot_p50_s)}", f"p99 {_ms(s.tpot_p99_s)}; ITL p50 {_ms(s.itl_p50_s)}"),
    ]
    return table(["", "now", "detail"], rows, title=f"status of {s.base_url} (last {s.interval_s:.1f} s)")
