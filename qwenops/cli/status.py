"""`qwenops status`: one screen of what the server is doing now (vLLM's /metrics)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from qwenops.cli._common import finish, json_option, profile_option

if TYPE_CHECKING:
    from rich.console import RenderableType

    from qwenops.config.target import ConfiguredServer
    from qwenops.status.run import ServerStatus, Trend

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
    from qwenops.config.target import configured_server
    from qwenops.results import CommandResult
    from qwenops.status.run import read_status

    if watch and json_mode:
        raise click.UsageError("--watch draws a screen; --json prints one document: choose one")
    server = configured_server(profile, base_url)
    if watch:
        _watch(server, interval_s)
        return
    result = read_status(server, interval_s=interval_s)
    finish(CommandResult(command="status", data=result, ok=result.ok), json_mode=json_mode, view=_view)


def _watch(server: ConfiguredServer, interval_s: float) -> None:
    import os
    import sys

    from qwenops.cli.output import stdout_console
    from qwenops.status.run import Trend, can_draw_blocks, read_status

    console = stdout_console()
    trend = Trend()
    ascii_only = not can_draw_blocks(console.encoding)

    def screen() -> RenderableType:
        from qwenops.cli.output import safe_renderable

        status = read_status(server, interval_s=interval_s)
        trend.add(status)
        return safe_renderable(_view(status, trend, ascii_only=ascii_only))  # Live draws it, not print

    try:
        if sys.stdout.isatty():
            from rich.live import Live

            with Live(screen(), console=console, auto_refresh=False) as live:
                while True:
                    live.update(screen(), refresh=True)
        else:
            while True:  # a pipe or a log: one line per interval
                s = read_status(server, interval_s=interval_s)
                print(_line(s), flush=True)
    except KeyboardInterrupt:
        return  # Ctrl-C is how a watch ends
    except BrokenPipeError:
        # The reader went away (`status --watch | head`): that ends a watch too. Python would complain
        # again flushing stdout at exit, so stdout now goes nowhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return


# "—": nothing to measure (no request finished in the interval); "n/a": the server's value cannot be
# true, and the problems under the table say why.
def _ms(value: float | None, missing: str = "—") -> str:
    return missing if value is None else f"{value * 1000:.1f} ms"


def _num(value: float | None, fmt: str = "{:g}", missing: str = "n/a") -> str:
    return missing if value is None else fmt.format(value)


def _line(s: ServerStatus) -> str:
    problems = f" problems: {'; '.join(s.problems)}" if s.problems else ""
    return (f"{'healthy' if s.healthy else 'UNHEALTHY'} running={_num(s.requests_running)} "
            f"waiting={_num(s.requests_waiting)} kv={_num(s.kv_cache_usage, '{:.0%}')} "
            f"preempted={_num(s.preemptions_total)} gen={_num(s.generation_tokens_per_s, '{:.1f}')}/s "
            f"ttft_p50={_ms(s.ttft_p50_s)} tpot_p50={_ms(s.tpot_p50_s)}{problems}")


def _trend_view(trend: Trend, interval_s: float, *, ascii_only: bool) -> RenderableType:
    """One row a series: its sparkline over the window (a gap where the value was n/a) and the latest."""
    from qwenops.cli.views.tables import table
    from qwenops.status.run import sparkline

    rows = []
    for series in trend.series():
        line = sparkline(series.values, ceiling=series.ceiling, ascii_only=ascii_only)
        fmt = "{:.0%}" if series.ceiling == 1.0 else "{:.1f}" if series.name == "tokens/s" else "{:g}"
        known = [v for v in series.values if v is not None]
        scale = "0-100%" if series.ceiling == 1.0 else f"0-{fmt.format(max(known))}" if known else "n/a"
        rows.append((series.name, line, f"{_num(series.latest, fmt)} {series.unit} now; scale {scale}"))
    title = f"trend: the last {len(trend)} intervals of {interval_s:.1f} s (a gap: n/a)"
    return table(["", "trend", "detail"], rows, title=title)


def _view(s: ServerStatus, trend: Trend | None = None, *, ascii_only: bool = False) -> RenderableType:
    from rich.console import Group
    from rich.markup import escape

    from qwenops.cli.views.tables import table

    if s.uptime_s is None:
        uptime = "n/a"
    else:
        uptime = f"{s.uptime_s / 3600:.1f} h" if s.uptime_s >= 3600 else f"{s.uptime_s:.0f} s"
    health = "ok" if s.healthy else f"NOT HEALTHY: {s.health}"
    rows = [
        ("health", escape(health), escape(f"serving {', '.join(s.models) or 'n/a'}; up {uptime}")),
        ("requests", f"{_num(s.requests_running)} running, {_num(s.requests_waiting)} waiting",
         f"{_num(s.requests_finished)} finished in the last {s.interval_s:.1f} s"),
        ("KV cache", _num(s.kv_cache_usage, "{:.1%}"), f"{_num(s.preemptions_total)} preemptions since start"),
        ("tokens/s", f"{_num(s.generation_tokens_per_s, '{:.1f}')} out",
         f"{_num(s.prompt_tokens_per_s, '{:.1f}')} prompt tokens/s in"),
        ("TTFT", f"p50 {_ms(s.ttft_p50_s)}", f"p99 {_ms(s.ttft_p99_s)}"),
        ("TPOT", f"p50 {_ms(s.tpot_p50_s)}", f"p99 {_ms(s.tpot_p99_s)}; ITL p50 {_ms(s.itl_p50_s)}"),
    ]
    drawn: RenderableType = table(["", "now", "detail"], rows,
                                  title=escape(f"status of {s.base_url} (last {s.interval_s:.1f} s)"))
    if trend is not None and len(trend):
        drawn = Group(drawn, _trend_view(trend, s.interval_s, ascii_only=ascii_only))
    if not s.problems:
        return drawn
    return Group(drawn, *(escape(f"problem: {p}") for p in s.problems))
