"""`status`: one screen of what the server is doing now (a table, the trends under `--watch`, the problems),
or one line per interval when `--watch` draws into a pipe or a log."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import RenderableType

    from qwenops.config.target import ConfiguredServer
    from qwenops.status.run import ServerStatus, Trend


def watch_status(server: ConfiguredServer, interval_s: float) -> None:
    """`status --watch`: the screen redrawn in place every interval on a terminal, one line per interval
    elsewhere, until Ctrl-C or the reader goes away."""
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
        return safe_renderable(status_view(status, trend, ascii_only=ascii_only))  # Live draws it, not print

    try:
        if sys.stdout.isatty():
            from rich.live import Live

            with Live(screen(), console=console, auto_refresh=False) as live:
                while True:
                    live.update(screen(), refresh=True)
        else:
            while True:  # a pipe or a log: one line per interval
                s = read_status(server, interval_s=interval_s)
                print(status_line(s), flush=True)
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


def status_line(s: ServerStatus) -> str:
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


def status_view(s: ServerStatus, trend: Trend | None = None, *, ascii_only: bool = False) -> RenderableType:
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
